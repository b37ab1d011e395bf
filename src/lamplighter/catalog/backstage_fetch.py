"""Fetching what a catalog names by URL, only when the import asks to (``--fetch``) and only
where the operator allows (``LAMPLIGHTER_CATALOG_FETCH_ALLOWLIST``, checked by the outbound
policy in ``core.outbound``).

Backstage reads Location targets and ``$text``/``$json``/``$yaml`` substitutions from URLs; an
import that is not told to keeps them as references and says so. A fetch follows no redirect,
reads at most the file size limit, gives up after a timeout, and one import makes at most
``max_fetches`` of them.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from lamplighter.catalog.backstage_parse import NotFetched
from lamplighter.catalog.backstage_sources import SourceError
from lamplighter.core import outbound
from lamplighter.core.errors import ValidationFailed

SETTING = "LAMPLIGHTER_CATALOG_FETCH_ALLOWLIST"
ClientFactory = Callable[[float, outbound.Policy], httpx.Client]


def default_client(timeout_s: float, policy: outbound.Policy) -> httpx.Client:
    return outbound.client(policy, timeout_s=timeout_s)


class UrlFetcher:
    """Reads allowed URLs for one import; tests pass a client over ``httpx.MockTransport``."""

    def __init__(
        self,
        allowlist: str,
        *,
        max_bytes: int,
        timeout_s: float = 10.0,
        max_fetches: int = 200,
        client: ClientFactory = default_client,
        policy: outbound.Policy | None = None,
    ) -> None:
        self.allowlist = allowlist
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.max_fetches = max_fetches
        self.client = client
        self.policy = policy or outbound.Policy()
        self.fetched = 0

    def refusal(self, url: str) -> str | None:
        """Why the policy refuses this URL, or None when it may be fetched."""
        try:
            outbound.check_allowed(
                url, self.allowlist, field="url", setting=SETTING, policy=self.policy
            )
        except ValidationFailed as exc:
            return exc.errors[0].reason if exc.errors else exc.detail
        return None

    def read(self, url: str) -> bytes:
        """The body of a 200 answer; NotFetched when the policy says no, SourceError when the
        fetch fails."""
        reason = self.refusal(url)
        if reason is not None:
            raise NotFetched(reason)
        if self.fetched >= self.max_fetches:
            raise SourceError(f"more than {self.max_fetches} URLs in one import; not fetched")
        self.fetched += 1
        try:
            with (
                self.client(self.timeout_s, self.policy) as client,
                client.stream("GET", url, headers={"User-Agent": "Lamplighter-Catalog/1"}) as got,
            ):
                if got.status_code != 200:
                    raise SourceError(f"{url} answered HTTP {got.status_code}")
                content = b""
                for chunk in got.iter_bytes():
                    content += chunk
                    if len(content) > self.max_bytes:
                        raise SourceError(f"{url} is over the limit of {self.max_bytes:,} bytes")
                return content
        except outbound.Refused as exc:
            raise NotFetched(str(exc)) from exc
        except httpx.TimeoutException as exc:
            raise SourceError(f"{url} timed out after {self.timeout_s:g} s") from exc
        except httpx.HTTPError as exc:
            raise SourceError(f"{url} failed: {type(exc).__name__}") from exc
