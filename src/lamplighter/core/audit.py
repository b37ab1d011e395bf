"""The append-only, hash-chained audit log."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
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
    return orjson.loads(orjson.dumps(result, default=str))  # type: ignore[no-any-return]


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


def _hash(values: Mapping[str, Any]) -> str:
    material = {key: values[key] for key in HASHED_FIELDS}
    material["at"] = values["at"].astimezone(dt.UTC).isoformat(timespec="microseconds")
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _entry_hash(entry: AuditEntry) -> str:
    return _hash({key: getattr(entry, key) for key in HASHED_FIELDS})


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
    return values


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    head_hash: str
    broken_id: int | None = None
    reason: str | None = None


def verify(*, session: Session, batch: int = 5000) -> VerifyResult:
    """Walk the chain in id order; report the first entry whose hash or link does not hold."""
    prev_hash = GENESIS_HASH
    checked = 0
    last_id = 0
    while True:
        rows = session.scalars(
            sa.select(AuditEntry)
            .where(AuditEntry.id > last_id)
            .order_by(AuditEntry.id)
            .limit(batch)
        ).all()
        if not rows:
            return VerifyResult(ok=True, checked=checked, head_hash=prev_hash)
        for entry in rows:
            if entry.prev_hash != prev_hash:
                return VerifyResult(
                    ok=False,
                    checked=checked,
                    head_hash=prev_hash,
                    broken_id=entry.id,
                    reason="previous-hash link does not match: an entry before it was removed or altered",
                )
            if _entry_hash(entry) != entry.hash:
                return VerifyResult(
                    ok=False,
                    checked=checked,
                    head_hash=prev_hash,
                    broken_id=entry.id,
                    reason="content does not match its hash: the entry was edited",
                )
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
