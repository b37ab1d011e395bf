"""URL Location targets and ``$text``/``$json``/``$yaml`` URLs: kept as references unless the
import is asked to fetch and the outbound policy allows the URL; fetched from a real HTTP
server on loopback here."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lamplighter.catalog import backstage, service
from lamplighter.catalog.schemas import ImportReport
from lamplighter.core.settings import Settings
from tests.conftest import SYSTEM, make_team, make_user

HEAD = "apiVersion: backstage.io/v1alpha1\n"


class Site:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.url = f"http://127.0.0.1:{port}"
        self.requests: list[str] = []


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    root = tmp_path / "site"
    root.mkdir()
    holder: dict[str, Site] = {}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:
            holder["site"].requests.append(self.path)
            if self.path.startswith("/redirect"):
                self.send_response(302)
                self.send_header("Location", "http://127.0.0.1:9/elsewhere.yaml")
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["site"] = Site(root, server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield holder["site"]
    server.shutdown()
    server.server_close()


def run(db: Any, settings: Settings, path: Path, **options: Any) -> ImportReport:
    with db.transaction() as session:
        return backstage.import_path(
            session=session, actor=SYSTEM, path=path, settings=settings, **options
        )


@pytest.fixture
def owners(db: Any) -> None:
    make_team(db, slug="payments", lead=make_user(db, email="lead@example.com"))


def published(site: Site) -> None:
    (site.root / "apis").mkdir()
    (site.root / "apis" / "catalog-info.yaml").write_text(
        HEAD + "kind: API\nmetadata: {name: ledger-api}\n"
        "spec: {type: openapi, owner: payments, definition: {$text: ./ledger.oas.yaml}}\n"
        "---\n" + HEAD + "kind: Location\nmetadata: {name: more}\nspec: {targets: [./more.yaml]}\n"
    )
    (site.root / "apis" / "ledger.oas.yaml").write_text("openapi: 3.0.0\ninfo: {title: Ledger}\n")
    (site.root / "apis" / "more.yaml").write_text(
        HEAD + "kind: Component\nmetadata: {name: ledger}\n"
        "spec: {type: service, owner: payments, providesApis: [ledger-api]}\n"
    )


def local_catalog(tmp_path: Path, site: Site, *extra: str) -> Path:
    path = tmp_path / "repo" / "catalog-info.yaml"
    path.parent.mkdir()
    documents = [
        "kind: Location\nmetadata: {name: remote}\n"
        f"spec: {{type: url, target: '{site.url}/apis/catalog-info.yaml'}}\n",
        "kind: API\nmetadata: {name: notes-api}\n"
        f"spec: {{type: openapi, owner: payments, definition: {{$text: '{site.url}/apis/ledger.oas.yaml'}}}}\n",
        *extra,
    ]
    path.write_text("---\n".join(HEAD + d for d in documents))
    return path


def test_urls_are_kept_as_references_unless_the_import_fetches(
    db: Any, settings: Settings, tmp_path: Path, site: Site, owners: None
) -> None:
    published(site)
    path = local_catalog(tmp_path, site)
    report = run(db, settings, path)
    assert report.errors == [] and report.created == ["api:default/notes-api"]
    assert [(w.document, w.field) for w in report.warnings] == [
        (0, "spec.target"),
        (1, "spec.definition.$text"),
    ]
    assert all("--fetch" in w.reason for w in report.warnings)
    assert site.requests == []  # nothing was sent
    with db.sessionmaker() as session:
        api = service.get_by_ref(session=session, ref="api:notes-api")
        assert api.spec_extra["definition"] == {"$text": f"{site.url}/apis/ledger.oas.yaml"}
    # Asked to fetch, but the operator allows nothing: still references, still nothing sent.
    refused = run(db, settings, path, fetch=True)
    assert "LAMPLIGHTER_CATALOG_FETCH_ALLOWLIST" in refused.warnings[0].reason
    assert site.requests == []


def test_allowed_urls_are_fetched_with_their_relative_targets(
    db: Any, settings: Settings, tmp_path: Path, site: Site, owners: None
) -> None:
    published(site)
    allowed = settings.model_copy(
        # the test site is on loopback, which the outbound policy refuses unless allowed
        update={
            "catalog_fetch_allowlist": f"{site.url}/apis/",
            "outbound_allow_internal": "127.0.0.0/8",
        }
    )
    report = run(db, allowed, local_catalog(tmp_path, site), fetch=True)
    assert report.errors == [] and report.warnings == []
    assert sorted(report.created) == [
        "api:default/ledger-api",
        "api:default/notes-api",
        "service:default/ledger",
    ]
    assert sorted(site.requests) == [
        "/apis/catalog-info.yaml",
        "/apis/ledger.oas.yaml",
        "/apis/ledger.oas.yaml",
        "/apis/more.yaml",
    ]
    with db.sessionmaker() as session:
        oas = (site.root / "apis" / "ledger.oas.yaml").read_text()
        api = service.get_by_ref(session=session, ref="api:ledger-api")
        assert api.spec_extra["definition"] == oas  # relative to the fetched file's URL
        assert api.location == f"{site.url}/apis/catalog-info.yaml"
        assert (
            service.get_by_ref(session=session, ref="api:notes-api").spec_extra["definition"] == oas
        )
        ledger = service.get_by_ref(session=session, ref="ledger")
        provided = service.relations_of(session=session, entity_id=ledger.id)["provides_apis"]
        assert [e.ref for e in provided] == ["api:default/ledger-api"]


def test_the_outbound_policy_bounds_what_is_fetched(
    db: Any, settings: Settings, tmp_path: Path, site: Site, owners: None
) -> None:
    (site.root / "big.yaml").write_text("# " + "x" * 5000 + "\n")
    allowed = settings.model_copy(
        update={
            "catalog_fetch_allowlist": f"{site.url}/, http://169.254.169.254/",
            "outbound_allow_internal": "127.0.0.0/8, 169.254.0.0/16",
            "catalog_max_file_bytes": 4096,
        }
    )
    documents = [
        f"kind: Location\nmetadata: {{name: a}}\nspec: {{target: '{site.url}/redirect.yaml'}}\n",
        f"kind: Location\nmetadata: {{name: b}}\nspec: {{target: '{site.url}/big.yaml'}}\n",
        f"kind: Location\nmetadata: {{name: c}}\nspec: {{target: '{site.url}/missing.yaml'}}\n",
        "kind: Location\nmetadata: {name: d}\n"
        "spec: {target: 'http://169.254.169.254/latest/meta-data/x.yaml'}\n",
        "kind: Location\nmetadata: {name: e}\nspec: {target: 'https://elsewhere.test/x.yaml'}\n",
    ]
    path = tmp_path / "repo" / "catalog-info.yaml"
    path.parent.mkdir()
    path.write_text("---\n".join(HEAD + d for d in documents))
    report = run(db, allowed, path, fetch=True)
    by_file = {e.file: e.reason for e in report.errors}
    assert "answered HTTP 302" in by_file[f"{site.url}/redirect.yaml"]  # redirects not followed
    assert "over the limit of 4,096 bytes" in by_file[f"{site.url}/big.yaml"]
    assert "answered HTTP 404" in by_file[f"{site.url}/missing.yaml"]
    warnings = {w.document: w.reason for w in report.warnings}
    assert "cloud metadata address" in warnings[3]
    assert "is not under an allowed prefix" in warnings[4]
    assert sorted(site.requests) == ["/big.yaml", "/missing.yaml", "/redirect.yaml"]
