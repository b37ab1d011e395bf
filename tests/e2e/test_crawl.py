"""Every link works: signed in as the demo admin and as a demo member, start from every
navigation page, follow every internal link, and find no 4xx or 5xx.

No browser: the pages are fetched with the app's test client over the demo organisation (both
database engines). A link is followed once per path and query, up to CAP pages per person."""

from __future__ import annotations

import html
import re
from collections import deque
from dataclasses import dataclass
from urllib.parse import urldefrag, urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

from lamplighter import demo
from lamplighter.core import demo as core_demo
from lamplighter.core import webui
from lamplighter.core.db import Database
from tests.helpers import login

CAP = 400
DEMO_PASSWORD = core_demo.DEMO_PASSWORD
ORIGIN = "http://testserver"
# Links that end the session, and the API docs' own assets (Swagger UI loads them, not a person).
SKIPPED = re.compile(r"^/(logout|sign-out)\b|^/static/")
HREF = re.compile(r"<a\s[^>]*?href=\"([^\"]*)\"", re.I)


@dataclass(frozen=True)
class Broken:
    url: str
    status: int
    found_on: str


def start_pages(admin: bool) -> list[str]:
    """The header's and the side navigation's pages."""
    pages = ["/", *(d.path for d in webui.NAVIGATION), "/teams", "/audit", "/profile", "/inbox"]
    return [*pages, "/jobs"] if admin else pages


def internal(href: str, page: str) -> str | None:
    """The same-origin path and query a link points at, or None for one not to follow."""
    href = html.unescape(href).strip()
    if not href or href.startswith(("#", "mailto:", "javascript:")):
        return None
    url, _ = urldefrag(urljoin(ORIGIN + page, href))
    parts = urlsplit(url)
    if f"{parts.scheme}://{parts.netloc}" != ORIGIN or SKIPPED.search(parts.path):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def crawl(client: TestClient, starts: list[str]) -> tuple[list[Broken], int]:
    """Fetch every page reachable from ``starts``; the broken links and how many were fetched."""
    queue = deque((start, "(navigation)") for start in starts)
    seen = set(starts)
    broken: list[Broken] = []
    fetched = 0
    while queue and fetched < CAP:
        url, found_on = queue.popleft()
        response = client.get(url, follow_redirects=False)
        fetched += 1
        targets: list[str] = []
        if response.status_code >= 400:
            broken.append(Broken(url, response.status_code, found_on))
            continue
        if response.is_redirect:
            location = response.headers["location"]
            if location.startswith("/login"):  # a page that signs people out is broken too
                broken.append(Broken(url, response.status_code, found_on))
                continue
            targets = [location]
        elif "text/html" in response.headers.get("content-type", ""):
            targets = HREF.findall(response.text)
        for href in targets:
            target = internal(href, url)
            if target is not None and target not in seen:
                seen.add(target)
                queue.append((target, url))
    return broken, fetched


@pytest.mark.parametrize(
    ("email", "admin"), [("admin@example.com", True), ("priya@example.com", False)]
)
def test_no_link_is_broken(client: TestClient, db: Database, email: str, admin: bool) -> None:
    demo.load(db)
    assert login(client, email, DEMO_PASSWORD).status_code == 303
    broken, fetched = crawl(client, start_pages(admin))
    report = "\n".join(f"  {b.status} {b.url}  (linked from {b.found_on})" for b in broken)
    assert not broken, f"{len(broken)} broken links for {email}:\n{report}"
    assert fetched > 30, "the crawl reached the demo organisation's pages"
