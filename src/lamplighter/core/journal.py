"""Orders the journal (audit entries and events) in commit order.

Audit entries are hash-chained and events are read by consumers with ``after=ID``; both need ids
that increase in the order transactions commit. On PostgreSQL a transaction-scoped advisory lock
is taken before the first audit entry or event is written, so sequence values are handed out in
commit order. SQLite has a single writer, and the write lock is held from the first insert on.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

JOURNAL_LOCK_KEY = 0x4C414D50  # "LAMP"


def lock_journal(session: Session) -> None:
    if session.info.get("journal_locked"):
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(JOURNAL_LOCK_KEY)))
    else:
        # A write that changes nothing still takes SQLite's write lock for the transaction,
        # so the last hash read next cannot change under us.
        session.execute(sa.text("UPDATE audit_entries SET id = id WHERE 0"))
    session.info["journal_locked"] = True


def _reset(session: Session, *_: object) -> None:
    session.info.pop("journal_locked", None)


sa.event.listen(Session, "after_commit", _reset)
sa.event.listen(Session, "after_rollback", _reset)
sa.event.listen(Session, "after_soft_rollback", _reset)
