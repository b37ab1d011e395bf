"""Signed one-click links to acknowledge or resolve an alert group, from an email or a chat.

A link names the group, the action, the person it was sent to and when it stops working, and
carries an HMAC-SHA256 over all four with a key derived from the secret key; nothing is stored.
Whoever holds the link acts as that person, for that one action on that one group, until it
expires (``LAMPLIGHTER_ALERT_LINK_TTL_HOURS``)::

    token = sign(settings, group_id=12, action="ack", user_id=7)
    url(settings, token)  # http://127.0.0.1:8080/alerts/act/12.ack.7.1767225600.<signature>
    verify(settings, token)  # LinkClaim(group_id=12, action="ack", user_id=7, expires_at=…)

A token that was altered (another group, action, person or expiry) or signed with another key
is a 404 problem; an authentic one past its expiry a 410 ("link expired").
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

from lamplighter.core.db import utcnow
from lamplighter.core.errors import LamplighterError, NotFound, ValidationFailed
from lamplighter.core.settings import Settings

Action = Literal["ack", "resolve"]
ACTIONS: tuple[Action, ...] = ("ack", "resolve")
VERSION = "v1"
MAX_TOKEN = 200  # ids, an action, a timestamp and 43 characters of signature fit in far less
_MAX_ID = 2**63 - 1


class LinkExpired(LamplighterError):
    status = 410
    slug = "link-expired"
    title = "Link expired"


@dataclass(frozen=True)
class LinkClaim:
    """What an authentic, unexpired link allows: ``action`` on ``group_id`` as ``user_id``."""

    group_id: int
    action: Action
    user_id: int
    expires_at: dt.datetime


def _key(settings: Settings) -> bytes:
    # Its own key, so that no other HMAC made with the secret key can pass for a link.
    return _derived(settings.effective_secret_key())


@functools.lru_cache(maxsize=8)
def _derived(secret: bytes) -> bytes:
    return hashlib.sha256(b"lamplighter-alert-links:" + secret).digest()


def _signature(settings: Settings, payload: str) -> str:
    mac = hmac.new(_key(settings), f"{VERSION}.{payload}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def sign(
    settings: Settings,
    *,
    group_id: int,
    action: Action,
    user_id: int,
    now: dt.datetime | None = None,
) -> str:
    """A URL-safe token letting ``user_id`` do ``action`` on ``group_id`` until
    ``now + alert_link_ttl_hours``."""
    if action not in ACTIONS:
        raise ValidationFailed.one("action", f"must be one of {', '.join(ACTIONS)}")
    for field, value in (("group_id", group_id), ("user_id", user_id)):
        if isinstance(value, bool) or not 1 <= value <= _MAX_ID:
            raise ValidationFailed.one(field, "must be a positive id")
    expires_at = (now or utcnow()) + dt.timedelta(hours=settings.alert_link_ttl_hours)
    payload = f"{group_id}.{action}.{user_id}.{int(expires_at.timestamp())}"
    return f"{payload}.{_signature(settings, payload)}"


def verify(
    settings: Settings, token: str, *, now: dt.datetime | None = None, action: str | None = None
) -> LinkClaim:
    """The claim of an authentic, unexpired token (of ``action``, when given); a 404 problem
    for anything else, a 410 for a link that has expired."""
    invalid = NotFound("this link is not valid: it was changed, or it is not Lamplighter's")
    if len(token) > MAX_TOKEN:
        raise invalid
    payload, _, signature = token.rpartition(".")
    if not hmac.compare_digest(signature.encode(), _signature(settings, payload).encode()):
        raise invalid
    try:
        group_text, claimed, user_text, expiry_text = payload.split(".")
        group_id, user_id, expiry = int(group_text), int(user_text), int(expiry_text)
    except ValueError:
        raise invalid from None
    if claimed not in ACTIONS or (action is not None and claimed != action):
        raise invalid
    expires_at = dt.datetime.fromtimestamp(expiry, dt.UTC)
    if (now or utcnow()) >= expires_at:
        raise LinkExpired(
            f"this link expired at {expires_at:%Y-%m-%d %H:%M} UTC; "
            "open the alert group in Lamplighter instead"
        )
    return LinkClaim(group_id=group_id, action=claimed, user_id=user_id, expires_at=expires_at)


def url(settings: Settings, token: str) -> str:
    """Where the link points: ``{base_url}/alerts/act/{token}``."""
    return f"{settings.base_url.rstrip('/')}/alerts/act/{token}"
