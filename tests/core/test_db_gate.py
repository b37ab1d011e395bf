"""SQLite's write gate: writers of one process queue in turn instead of sleeping in SQLite's
busy handler, and the gate is always given back, whichever way a transaction ends."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from lamplighter.core.context import Actor
from lamplighter.core.db import Database, SQLiteWriteGate, driver_cursor, write_gate
from lamplighter.core.migrate import upgrade
from lamplighter.core.models import Event
from lamplighter.tickets import service
from lamplighter.tickets.models import Ticket


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'gate.db'}"
    upgrade(url)
    database = Database(url)
    yield database
    database.dispose()


def _gate(database: Database) -> SQLiteWriteGate:
    gate = write_gate(database.engine)
    assert gate is not None
    return gate


def _insert_event(session: sa.orm.Session, n: int) -> None:
    session.add(Event(type="test.gate", subject=f"s:{n}", payload={}))
    session.flush()


def test_reads_do_not_take_the_gate_and_writes_hold_it_until_commit(sqlite_db: Database) -> None:
    gate = _gate(sqlite_db)
    with sqlite_db.sessionmaker() as session:
        session.execute(sa.select(Event)).all()
        assert not gate.lock.locked()
        _insert_event(session, 1)
        assert gate.lock.locked()
        session.commit()
        assert not gate.lock.locked()


def test_writes_on_the_drivers_cursor_hold_the_gate_until_commit(sqlite_db: Database) -> None:
    """The alert intake writes on the driver's cursor, past SQLAlchemy's events: it takes the
    gate itself, so another thread's writer still waits its turn instead of SQLite's sleeps."""
    gate = _gate(sqlite_db)
    with sqlite_db.sessionmaker() as session:
        driver_cursor(session, write=False).execute("SELECT count(*) FROM events")
        assert not gate.lock.locked()
        cursor = driver_cursor(session, write=True)
        assert gate.lock.locked()
        cursor.execute(
            "INSERT INTO events (type, subject, payload, at) VALUES (?, ?, ?, ?)",
            ("test.gate", "s:driver", "{}", "2026-12-06 00:00:00.000000"),
        )
        session.commit()
        assert not gate.lock.locked()
    with sqlite_db.sessionmaker() as session:
        subjects = session.scalars(sa.select(Event.subject)).all()
    assert subjects == ["s:driver"]


@pytest.mark.parametrize("ending", ["rollback", "close", "exception"])
def test_every_way_out_of_a_transaction_gives_the_gate_back(
    sqlite_db: Database, ending: str
) -> None:
    gate = _gate(sqlite_db)
    if ending == "exception":
        with pytest.raises(RuntimeError), sqlite_db.transaction() as session:
            _insert_event(session, 1)
            raise RuntimeError("boom")
    else:
        session = sqlite_db.sessionmaker()
        _insert_event(session, 1)
        assert gate.lock.locked()
        session.rollback() if ending == "rollback" else session.close()
        session.close()
    assert not gate.lock.locked()
    with sqlite_db.sessionmaker() as check:
        assert check.scalar(sa.select(sa.func.count()).select_from(Event)) == 0


def test_a_second_writer_waits_for_the_first_and_starts_as_it_commits(
    sqlite_db: Database,
) -> None:
    first = sqlite_db.sessionmaker()
    _insert_event(first, 1)
    done = threading.Event()
    waited: list[float] = []

    def second() -> None:
        start = time.perf_counter()
        with sqlite_db.transaction() as session:
            _insert_event(session, 2)
        waited.append(time.perf_counter() - start)
        done.set()

    thread = threading.Thread(target=second)
    thread.start()
    assert not done.wait(0.3)  # blocked while the first holds the write
    first.commit()
    first.close()
    assert done.wait(5)
    thread.join()
    # Handed over at once: SQLite's busy handler would have slept in steps of up to 100 ms.
    assert waited[0] < 0.3 + 0.09
    with sqlite_db.sessionmaker() as check:
        assert check.scalar(sa.select(sa.func.count()).select_from(Event)) == 2


def test_a_thread_writing_on_two_connections_is_not_deadlocked(sqlite_db: Database) -> None:
    gate = _gate(sqlite_db)
    gate.timeout_s = 0.2
    outer = sqlite_db.sessionmaker()
    _insert_event(outer, 1)
    inner = sqlite_db.sessionmaker()
    # The inner write cannot have the gate, goes on after the timeout and meets SQLite's own
    # lock, which the outer transaction holds: a clear "database is locked", not a hang.
    inner.connection().exec_driver_sql("PRAGMA busy_timeout=100")
    with pytest.raises(sa.exc.OperationalError, match="locked"):
        _insert_event(inner, 2)
    inner.close()
    outer.commit()
    outer.close()
    assert not gate.lock.locked()


def test_concurrent_ticket_creates_all_land_and_leave_the_gate_free(sqlite_db: Database) -> None:
    actor = Actor.system("test")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(25):
                with sqlite_db.transaction() as session:
                    service.create(
                        session=session,
                        actor=actor,
                        data=service.TicketInput(type="database", title=f"{n}-{i}"),
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert not _gate(sqlite_db).lock.locked()
    with sqlite_db.sessionmaker() as check:
        assert check.scalar(sa.select(sa.func.count()).select_from(Ticket)) == 100


def test_two_engines_on_one_file_share_the_gate(tmp_path: Path) -> None:
    """``lamplighter serve`` holds two engines on the database (the API's and its in-process
    worker's): their writers hand the lock to each other through the one gate of the file,
    while another file has a gate of its own."""
    first = Database(f"sqlite:///{tmp_path / 'one.db'}")
    second = Database(f"sqlite:///{tmp_path / 'one.db'}")
    other = Database(f"sqlite:///{tmp_path / 'two.db'}")
    try:
        gate = write_gate(first.engine)
        assert gate is not None and write_gate(second.engine) is gate
        assert write_gate(other.engine) is not gate
        with first.engine.begin() as one:
            one.execute(sa.text("CREATE TABLE t (x INTEGER)"))
        taken = threading.Event()
        order: list[str] = []

        def hold() -> None:
            with first.engine.begin() as one:
                one.execute(sa.text("INSERT INTO t VALUES (1)"))
                taken.set()
                time.sleep(0.3)
                order.append("first committed")

        holder = threading.Thread(target=hold)
        holder.start()
        taken.wait(5)
        with second.engine.begin() as two:  # waits at the gate, not in SQLite's busy sleeps
            two.execute(sa.text("INSERT INTO t VALUES (2)"))
            order.append("second wrote")
        holder.join()
        assert order == ["first committed", "second wrote"]
    finally:
        for database in (first, second, other):
            database.dispose()


_HOLDER = """
import sys, time
import sqlalchemy as sa
from lamplighter.core.db import Database
database = Database(sys.argv[1])
with database.engine.begin() as connection:
    connection.execute(sa.text("INSERT INTO t VALUES (1)"))
    print("holding", flush=True)
    time.sleep(60)
"""


def test_the_gate_spans_processes_and_a_killed_holder_frees_it(tmp_path: Path) -> None:
    """``serve --workers`` and ``lamplighter worker`` write one SQLite file from several
    processes: a writer waits for another process's transaction at the gate's file lock (not in
    SQLite's busy sleeps), and a holder killed mid-transaction leaves it free at once."""
    url = f"sqlite:///{tmp_path / 'procs.db'}"
    database = Database(url)
    with database.engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE t (x INTEGER)"))
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        gate = _gate(database)
        gate.timeout_s = 0.3
        with database.sessionmaker() as session:
            connection = session.connection()
            started = time.monotonic()
            gate.hold(connection)
            assert connection.info[gate.KEY] is False  # the other process has it
            assert time.monotonic() - started >= 0.3
            assert not gate.lock.locked()  # this process's part is not kept
            connection.info.pop(gate.KEY)
        holder.kill()
        holder.wait(10)
        gate.timeout_s = 10.0
        started = time.monotonic()
        with database.engine.begin() as connection:
            connection.execute(sa.text("INSERT INTO t VALUES (2)"))
        assert time.monotonic() - started < 1.0
        with database.engine.connect() as connection:
            assert connection.execute(sa.text("SELECT x FROM t")).scalars().all() == [2]
    finally:
        holder.kill()
        holder.wait(10)
        database.dispose()
    assert (tmp_path / "procs.db-gate").exists()
