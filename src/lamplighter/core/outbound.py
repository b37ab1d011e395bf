"""The outbound policy: what Lamplighter may send a request to, for every feature that does.

A URL is allowed when it is an absolute http(s) URL without credentials or dot segments, lies at
or under one of the operator's allowed prefixes (same scheme, host and port), and neither names
nor resolves to a link-local or cloud metadata address (``webhooks.check_url`` and
``check_resolved``). Webhook deliveries, the self-service ``http.request`` action and the catalog
import's ``--fetch`` all ask here.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from lamplighter.core import jobs, webhooks
from lamplighter.core.errors import ValidationFailed


def prefixes_of(allowlist: str) -> list[str]:
    return [p.strip() for p in allowlist.split(",") if p.strip()]


def prefix_matches(url: str, prefix: str) -> bool:
    """Same scheme, host and port, and the path at or under the prefix's path."""
    target, allowed = urlsplit(url), urlsplit(prefix)
    if target.scheme.lower() != allowed.scheme.lower() or not allowed.hostname:
        return False
    if target.hostname != allowed.hostname:  # urlsplit lowercases host names
        return False
    default = {"http": 80, "https": 443}.get(allowed.scheme.lower())
    if (target.port or default) != (allowed.port or default):
        return False
    base = allowed.path.rstrip("/")
    return not base or target.path == base or target.path.startswith(base + "/")


def check_allowed(url: str, allowlist: str, *, field: str, setting: str) -> None:
    """Raise ValidationFailed (naming ``field``) unless the policy allows a request to ``url``;
    ``setting`` names the allowlist's variable in the message."""
    prefixes = prefixes_of(allowlist)
    if not prefixes:
        raise ValidationFailed.one(
            field, f"nothing may be fetched until {setting} names the allowed URL prefixes"
        )
    webhooks.check_url(url, field=field)
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ValidationFailed.one(field, "put credentials in headers, not in the URL")
    if any(unquote(segment) in {".", ".."} for segment in parts.path.split("/")):
        raise ValidationFailed.one(field, "'.' and '..' path segments are not allowed")
    if not any(prefix_matches(url, prefix) for prefix in prefixes):
        raise ValidationFailed.one(
            field,
            f"{parts.scheme}://{parts.netloc}{parts.path} is not under an allowed prefix of "
            f"{setting} ({', '.join(prefixes)})",
        )
    try:
        webhooks.check_resolved(url)
    except jobs.PermanentFailure as exc:
        raise ValidationFailed.one(field, str(exc)) from exc
