"""The time the application reads: the wall clock, or a clock a test holds still and moves.

Everything that stamps or compares times calls :func:`lamplighter.core.db.utcnow`, which reads
:func:`now`. Production never sets a clock, so it reads the wall clock. A test that would
otherwise sleep (a backoff, a lease running out, a job due later) holds the clock instead::

    with clock.frozen() as frozen:
        worker.run_once()  # fails; the retry is due in 0.05 s
        frozen.advance(seconds=1)
        worker.run_once()  # due now: runs again at once, no sleeping

Only the application's timestamps move; ``time.monotonic`` and the database's own ``now()`` do
not.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def wall() -> dt.datetime:
    """The wall clock, as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


class ManualClock:
    """A clock that stands still until told to move (thread-safe: workers in threads read it)."""

    def __init__(self, start: dt.datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("a clock keeps aware datetimes")
        self._now = start.astimezone(dt.UTC)
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float = 0.0, **delta: float) -> dt.datetime:
        """Move forward by ``seconds`` (and any ``timedelta`` keywords); return the new time."""
        step = dt.timedelta(seconds=seconds, **delta)
        if step < dt.timedelta(0):
            raise ValueError("a clock does not go back")
        with self._lock:
            self._now += step
            return self._now

    def set(self, when: dt.datetime) -> None:
        """Jump to ``when``; only forward, as the wall clock would."""
        if when.tzinfo is None:
            raise ValueError("a clock keeps aware datetimes")
        with self._lock:
            if when < self._now:
                raise ValueError("a clock does not go back")
            self._now = when.astimezone(dt.UTC)


_manual: ManualClock | None = None


def now() -> dt.datetime:
    """The current time as an aware UTC datetime: the held clock's, else the wall clock's."""
    manual = _manual
    return manual.now() if manual is not None else wall()


@contextmanager
def frozen(at: dt.datetime | None = None) -> Iterator[ManualClock]:
    """Hold the clock at ``at`` (default: the wall clock's now) until the block ends."""
    global _manual
    if _manual is not None:
        raise RuntimeError("the clock is already held")
    _manual = ManualClock(at or wall())
    try:
        yield _manual
    finally:
        _manual = None
