"""Database engine, sessions and the declarative base shared by every domain."""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from lamplighter.core import clock

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    """Now, in UTC; read through :mod:`lamplighter.core.clock` so tests can hold time still."""
    return clock.now()


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and always read back time-zone aware."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; attach a time zone")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JSONType}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class SQLiteWriteGate:
    """Hands SQLite's single write lock from writer to writer without waiting.

    SQLite lets one connection write at a time. A connection that finds the lock taken sleeps in
    SQLite's busy handler, in steps that grow to 100 ms, while other writers keep taking the
    lock as it frees: under four concurrent writers a create that takes 5 ms waited up to half a
    second. The gate is taken just before a connection's first write statement (where Python's
    sqlite3 begins the transaction) and given back when that transaction ends, so the next
    writer starts the moment the last one commits.

    It has two parts: a lock for the threads of this process, then, for a database file, an
    exclusive ``flock`` on ``<database>-gate`` beside it for the processes (``serve --workers``,
    a ``lamplighter worker``, the CLI), which the kernel gives back if a process dies. A waiting
    process polls the file lock every 50 µs to 1 ms.

    Waiting is bounded: a writer that cannot have the gate within ``timeout_s`` goes on without
    it and SQLite's own locking decides, so two connections written from one thread (or a
    stopped process holding the file lock) can never deadlock here.
    """

    WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
    KEY = "lamplighter_write_gate"

    def __init__(self, timeout_s: float = 10.0, path: str | None = None) -> None:
        self.lock = threading.Lock()
        self.timeout_s = timeout_s
        self.path = path
        self._fd: int | None = None
        self._pid = 0

    def install(self, engine: Engine) -> None:
        _GATES[engine] = self
        event.listen(engine, "before_cursor_execute", self._before_execute)
        event.listen(engine, "commit", self._release_connection)
        event.listen(engine, "rollback", self._release_connection)
        event.listen(engine.pool, "checkin", self._release_record)
        event.listen(engine.pool, "reset", self._release_reset)

    def _before_execute(self, conn: sa.Connection, _cursor: Any, statement: str, *_: Any) -> None:
        info = conn.info
        if self.KEY in info or not statement.lstrip()[:7].upper().startswith(self.WRITES):
            return
        info[self.KEY] = self._acquire()

    def hold(self, conn: sa.Connection) -> None:
        """Take the gate for ``conn``'s transaction before it writes past SQLAlchemy (on the
        driver's cursor, :func:`driver_cursor`), as the event does for SQLAlchemy's statements."""
        info = conn.info
        if self.KEY not in info:
            info[self.KEY] = self._acquire()

    def _acquire(self) -> bool:
        """Both parts, within ``timeout_s``; False (and neither held) when not."""
        deadline = time.monotonic() + self.timeout_s
        if not self.lock.acquire(timeout=self.timeout_s):
            return False
        fd = self._file()
        if fd is None:
            return True
        pause = 0.00005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self.lock.release()
                    return False
                time.sleep(pause)
                pause = min(pause * 2, 0.001)

    def _file(self) -> int | None:
        """This process's descriptor of the gate file (opened again in a forked child: a
        descriptor shared across a fork would share its lock); None for an in-memory database
        or where the file cannot be opened (then the gate is this process's alone)."""
        if self.path is None:
            return None
        pid = os.getpid()
        if self._pid != pid:
            self._pid = pid
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                self._fd = None
        return self._fd

    def _release(self, info: dict[Any, Any]) -> None:
        if info.pop(self.KEY, False):
            if self._fd is not None and self._pid == os.getpid():
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            self.lock.release()

    def _release_connection(self, conn: sa.Connection) -> None:
        self._release(conn.info)

    def _release_record(self, _dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            self._release(record.info)

    def _release_reset(
        self, dbapi_connection: Any, connection_record: Any, reset_state: Any
    ) -> None:
        self._release(connection_record.info)


_GATES: weakref.WeakKeyDictionary[Engine, SQLiteWriteGate] = weakref.WeakKeyDictionary()
_GATES_BY_FILE: dict[str, SQLiteWriteGate] = {}
_GATE_GUARD = threading.Lock()


def write_gate(engine: Engine) -> SQLiteWriteGate | None:
    """The engine's write gate (SQLite engines only)."""
    return _GATES.get(engine)


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys and a busy timeout on every connection."""
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 10},
            pool_size=pool_size,
            max_overflow=20,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # One gate per database file and process, and its file lock across processes: the API's
        # engine and the in-process worker's (``lamplighter serve``), the API processes of
        # ``serve --workers`` and a ``lamplighter worker`` hand the lock to each other, instead
        # of meeting SQLite's busy handler and its sleeps.
        shared = bool(database) and database != ":memory:"
        resolved = str(Path(str(database)).resolve()) if shared else None
        with _GATE_GUARD:
            gate = _GATES_BY_FILE.get(resolved) if resolved else None
            if gate is None:
                gate = SQLiteWriteGate(path=f"{resolved}-gate" if resolved else None)
                if resolved:
                    _GATES_BY_FILE[resolved] = gate
        gate.install(engine)
        return engine
    # No pre-ping: it is a round trip on every checkout, as many as a one-query request makes
    # (measured: the entity GET's wall time 4.1 -> 2.9 ms in-process). A connection the server
    # dropped is found when it is used instead: SQLAlchemy then invalidates the whole pool, so
    # after a database restart one request per process gets a 503 (``database-unavailable``,
    # with Retry-After) and the next ones reconnect.
    # LIFO: a thread that takes and returns a connection again and again (the alert
    # committer, the job worker) keeps the one warm server process and its prepared
    # statements instead of rotating through every pooled one.
    return sa.create_engine(
        url, pool_size=pool_size, max_overflow=20, pool_pre_ping=False, pool_use_lifo=True
    )


class Database:
    """An engine and its session factory; one per process."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def driver_connection(self) -> Iterator[Any]:
        """A pooled driver connection (sqlite3, psycopg) with no session around it, for a hot
        read that sends its own SQL: a session's begin and close cost more than the read."""
        connection = self.engine.raw_connection()
        try:
            yield connection.driver_connection
        finally:
            connection.close()  # back to the pool, which rolls back anything left open

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One use case: commit on success, roll back on any exception."""
        with self.sessionmaker() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


# -- SQL on the driver -----------------------------------------------------------------------------
# A hot read that runs a few small statements pays more for SQLAlchemy's per-statement work
# (compiling or looking up the cache key, binding, building ORM objects; ~0.25 ms each) than
# for the statements themselves. Such a read sends its own SQL through
# ``Connection.exec_driver_sql`` (same connection and transaction, same events), written with
# ``?`` placeholders; :func:`driver_rows` adapts them to psycopg's, and timestamps cross with
# :func:`driver_time` / :func:`from_driver_time` as each dialect stores them.

_PG_SQL: dict[str, str] = {}


def driver_rows(session: Session, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """Run the read ``sql`` (``?`` placeholders) on the driver connection under the session
    (its transaction); the rows, as tuples. Reads only: writes go through SQLAlchemy, whose
    events (the SQLite write gate) they need."""
    connection = session.connection()
    driver = connection.connection.driver_connection
    if connection.dialect.name == "postgresql":
        text = _PG_SQL.get(sql)
        if text is None:
            text = _PG_SQL[sql] = sql.replace("%", "%%").replace("?", "%s")
        return driver.execute(text, tuple(params)).fetchall()  # type: ignore[no-any-return,union-attr]
    return driver.execute(sql, tuple(params)).fetchall()  # type: ignore[no-any-return,union-attr]


def autocommit_reads(session: Session) -> None:
    """Let a read-only request's statements run outside a transaction on PostgreSQL: no
    ``BEGIN`` before them and no ``ROLLBACK`` when the connection goes back to the pool, two
    of a small read's seven round trips (who is on call at 8 connections: 972 → 1,453
    requests/s). Reads see what they would in a transaction at PostgreSQL's READ COMMITTED,
    where each statement takes its own snapshot anyway; never for a request that writes, whose
    statements would each commit alone. Does nothing once the session has a transaction (the
    caller's lookup ran in one) or on SQLite; the pool restores the connection's isolation
    level when it takes it back."""
    if session.get_bind().dialect.name == "postgresql" and not session.in_transaction():
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


def driver_cursor(session: Session, *, write: bool) -> Any:
    """A DB-API cursor on the session's connection, in its transaction, for statements in the
    dialect's own SQL and parameters (``?`` on SQLite, ``%s`` on PostgreSQL). A hot write path's
    few statements cost more in SQLAlchemy's per-statement work (events, result metadata; about
    40 µs each) than in the database. ``write``: the statements write, so on SQLite the
    process's write gate is taken first, as SQLAlchemy's event takes it for its own writes."""
    connection = session.connection()
    if write:
        gate = _GATES.get(connection.engine)
        if gate is not None:
            gate.hold(connection)
    return connection.connection.driver_connection.cursor()  # type: ignore[union-attr]


def driver_time(session: Session, value: dt.datetime) -> Any:
    """A timestamp parameter as :class:`UTCDateTime` stores it (SQLite: naive UTC text)."""
    if session.get_bind().dialect.name == "sqlite":
        return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    return value


def from_driver_time(value: Any) -> dt.datetime:
    """A timestamp the driver read (not NULL), aware in UTC (what :class:`UTCDateTime` gives)."""
    parsed: dt.datetime = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def driver_json(value: Any) -> Any:
    """A JSON column the driver read: text from sqlite3, already parsed from psycopg."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value
