"""Read-only requests on PostgreSQL may run outside a transaction (``autocommit_reads``); the
connection goes back to the pool transactional, and a session that already has a transaction
keeps it."""

from __future__ import annotations

import sqlalchemy as sa

from lamplighter.core.db import Database, autocommit_reads
from lamplighter.core.models import Event


def _events(database: Database) -> int:
    with database.sessionmaker() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(Event)) or 0)


def _autocommit(session: sa.orm.Session) -> bool:
    """psycopg's autocommit switch (sqlite3 has none before Python 3.12: never)."""
    driver = session.connection().connection.driver_connection
    return bool(getattr(driver, "autocommit", False))


def test_a_read_outside_a_transaction_leaves_the_pool_transactional(db: Database) -> None:
    with db.sessionmaker() as reader:
        autocommit_reads(reader)
        assert reader.scalar(sa.select(sa.func.count()).select_from(Event)) == 0
        assert _autocommit(reader) is (db.engine.dialect.name == "postgresql")
    for _ in range(3):  # the pool hands out the connection just used (LIFO), and others
        with db.sessionmaker() as writer:
            writer.add(Event(type="test.autocommit", subject="s:1", payload={}))
            writer.flush()
            assert _autocommit(writer) is False
            writer.rollback()
    assert _events(db) == 0  # each write was rolled back: nothing was committed on its own


def test_a_session_with_a_transaction_keeps_it(db: Database) -> None:
    with db.sessionmaker() as session:
        session.add(Event(type="test.autocommit", subject="s:2", payload={}))
        session.flush()
        autocommit_reads(session)  # too late: the write's transaction goes on
        assert session.scalar(sa.select(sa.func.count()).select_from(Event)) == 1
        session.rollback()
    assert _events(db) == 0
