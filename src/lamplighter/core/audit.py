"""The append-only, hash-chained audit log."""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.core.bulk import insert_rows
from lamplighter.core.context import Actor, request_info
from lamplighter.core.db import utcnow
from lamplighter.core.journal import lock_journal
from lamplighter.core.models import AuditEntry
from lamplighter.core.pagination import keyset

GENESIS_HASH = "0" * 64
_SECRET_WORDS = ("password", "secret", "token_hash", "session_hash", "private_key")


@functools.lru_cache(maxsize=4096)
def _is_secret(key: str) -> bool:
    return any(word in key.lower() for word in _SECRET_WORDS)


def redact(values: Mapping[str, Any]) -> dict[str, Any]:
    """Replace secret-looking fields by a marker so they never reach the audit log."""
    return {key: ("[redacted]" if _is_secret(key) else value) for key, value in values.items()}


def diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> dict[str, Any]:
    """Keep only what changed: ``{"before": {...}, "after": {...}}``."""
    before_r = redact(before or {})
    after_r = redact(after or {})
    keys = sorted(set(before_r) | set(after_r))
    changed = [k for k in keys if before_r.get(k) != after_r.get(k)]
    result: dict[str, Any] = {}
    if before is not None:
        result["before"] = {k: before_r.get(k) for k in changed if k in before_r}
    if after is not None:
        result["after"] = {k: after_r.get(k) for k in changed if k in after_r}
    try:
        return orjson.loads(orjson.dumps(result, default=str))  # type: ignore[no-any-return]
    except TypeError:  # an integer beyond 64 bits, which orjson cannot write (or read exactly)
        return json.loads(json.dumps(result, default=str))  # type: ignore[no-any-return]


HASHED_FIELDS = (
    "at",
    "actor_type",
    "actor_id",
    "actor_label",
    "action",
    "object_type",
    "object_id",
    "diff",
    "request_id",
    "client_addr",
    "prev_hash",
)


HASH_VERSION = 2
"""1: orjson over the Python values (PostgreSQL's JSONB changes numbers, so 1e16 read back did
not match and 1e30 could not be hashed); 2: ``canonical_json``, equal before and after a round
trip through either database."""


def _number(value: int | float) -> str:
    """A number as its exact decimal value, normalised: ``1e16``, ``10000000000000000`` and
    ``1.0e16`` are all ``1e16``. JSONB keeps a number's decimal value but not its spelling (a
    float 1e16 comes back as the int 10000000000000000), and RFC 8785's double formatting would
    lose integers beyond 2**53, so a changed big integer would go unnoticed."""
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("JSON has no NaN or infinity")
        exact = decimal.Decimal(repr(value))  # the shortest spelling, as it was written
    else:
        exact = decimal.Decimal(value)
    sign, digits, exponent = exact.as_tuple()
    text = "".join(map(str, digits)).lstrip("0")
    if not text:
        return "0"  # and -0.0, which PostgreSQL's numeric stores as 0
    stripped = text.rstrip("0")
    return f"{'-' if sign else ''}{stripped}e{int(exponent) + len(text) - len(stripped)}"


def canonical_json(value: Any) -> str:
    """One spelling of a JSON value, after RFC 8785 (JCS): no whitespace, object keys sorted by
    their UTF-16 code units, strings escaped minimally; numbers by ``_number``."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        keys = sorted(map(str, value), key=lambda key: key.encode("utf-16-be"))
        items = (f"{canonical_json(key)}:{canonical_json(value[key])}" for key in keys)
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(canonical_json(item) for item in value) + "]"
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _hash(values: Mapping[str, Any], version: int = HASH_VERSION) -> str:
    material = {key: values[key] for key in HASHED_FIELDS}
    material["at"] = values["at"].astimezone(dt.UTC).isoformat(timespec="microseconds")
    if version == 1:
        serialised = orjson.dumps(material, option=orjson.OPT_SORT_KEYS)
    else:
        serialised = canonical_json(material).encode()
    return hashlib.sha256(serialised).hexdigest()


def _entry_hash(entry: AuditEntry) -> str:
    return _hash({key: getattr(entry, key) for key in HASHED_FIELDS}, entry.hash_version)


def _last_hash(session: Session) -> str:
    last = session.scalar(sa.select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1))
    return last or GENESIS_HASH


@dataclass(frozen=True)
class Change:
    """One change for :func:`record_many`."""

    action: str
    object_type: str
    object_id: str | int
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None


def record(
    *,
    session: Session,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: str | int,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> None:
    """Append one audit entry in the caller's transaction, chained to the previous one."""
    lock_journal(session)
    values = _values(
        actor, Change(action, object_type, object_id, before, after), _last_hash(session)
    )
    session.execute(sa.insert(AuditEntry).values(values))


def record_many(*, session: Session, actor: Actor, changes: Sequence[Change]) -> int:
    """Append many entries at once (bulk imports), chained in the order given."""
    if not changes:
        return 0
    lock_journal(session)
    previous = _last_hash(session)
    rows = []
    for change in changes:
        values = _values(actor, change, previous)
        previous = values["hash"]
        rows.append(values)
    insert_rows(session, AuditEntry, rows)
    return len(rows)


def _values(actor: Actor, change: Change, prev_hash: str) -> dict[str, Any]:
    info = request_info.get()
    values: dict[str, Any] = {
        "at": utcnow(),
        "actor_type": actor.kind,
        "actor_id": actor.audit_id,
        "actor_label": actor.label,
        "action": change.action,
        "object_type": change.object_type,
        "object_id": str(change.object_id),
        "diff": diff(change.before, change.after),
        "request_id": info.request_id,
        "client_addr": info.client_addr,
        "prev_hash": prev_hash,
    }
    values["hash"] = _hash(values)
    values["hash_version"] = HASH_VERSION
    return values


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    head_hash: str
    broken_id: int | None = None
    reason: str | None = None
    bad: int = 0
    """How many entries do not hold (the walk goes on past the first)."""


def _problem(entry: AuditEntry, prev_hash: str) -> str | None:
    if entry.prev_hash != prev_hash:
        return "previous-hash link does not match: an entry before it was removed or altered"
    try:
        matches = _entry_hash(entry) == entry.hash
    except Exception as exc:  # a value no hash version can read is a bad entry
        return f"content cannot be hashed ({type(exc).__name__}): the entry was altered"
    if not matches:
        return "content does not match its hash: the entry was edited"
    return None


def verify(*, session: Session, batch: int = 5000) -> VerifyResult:
    """Walk the whole chain in id order; report the first entry whose hash or link does not
    hold and how many do not. Each link is checked against the stored hash before it, so one
    bad entry is counted once, not as the start of a broken tail."""
    prev_hash = GENESIS_HASH
    checked = bad = 0
    last_id = 0
    first: tuple[int, str] | None = None
    while True:
        rows = session.scalars(
            sa.select(AuditEntry)
            .where(AuditEntry.id > last_id)
            .order_by(AuditEntry.id)
            .limit(batch)
        ).all()
        if not rows:
            return VerifyResult(
                ok=bad == 0,
                checked=checked,
                head_hash=prev_hash,
                broken_id=first[0] if first else None,
                reason=first[1] if first else None,
                bad=bad,
            )
        for entry in rows:
            problem = _problem(entry, prev_hash)
            if problem is not None:
                bad += 1
                first = first or (entry.id, problem)
            prev_hash = entry.hash
            checked += 1
            last_id = entry.id
        session.expunge_all()


def iter_filtered(
    *,
    session: Session,
    actor_id: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    action: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> Iterator[AuditEntry]:
    """Newest first, keyset-paginated by id."""
    query = sa.select(AuditEntry)
    if actor_id:
        query = query.where(AuditEntry.actor_id == actor_id)
    if object_type:
        query = query.where(AuditEntry.object_type == object_type)
    if object_id:
        query = query.where(AuditEntry.object_id == object_id)
    if action:
        query = query.where(AuditEntry.action == action)
    if since:
        query = query.where(AuditEntry.at >= since)
    if until:
        query = query.where(AuditEntry.at < until)
    yield from session.scalars(
        keyset(query, AuditEntry.id, position=before_id, limit=limit, newest_first=True)
    )
