"""Import of ticket history from a plain CSV, a Jira CSV export or a Jira JSON (REST search) export.

``import_formats`` reads a file into records through the field mapping and value maps; this
module checks every record against the database's request types, teams and people, then writes.
A file is checked whole before anything is written: each problem is reported with its row and
column, and one bad row means nothing is imported. Import is idempotent by source id
(``jira:OPS-123``, ``csv:<source_id>``): rows already imported are skipped and counted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.core import audit, events, people
from lamplighter.core.authz import PRIVILEGED, require_role
from lamplighter.core.context import Actor
from lamplighter.core.db import utcnow
from lamplighter.tickets.import_formats import (
    MAX_EFFORT_MINUTES,
    REQUIRED,
    RESOLUTIONS,
    ImportMapping,
    Problems,
    Record,
    build_mapping,
    cell_text,
    decode,
    read_records,
)
from lamplighter.tickets.models import (
    RequestType,
    Resolution,
    Status,
    StatusChange,
    Ticket,
)
from lamplighter.tickets.service import _due

CHUNK = 5000
Progress = Callable[[str, int, int], None]
T = TypeVar("T")


@dataclass
class ImportReport:
    format: str
    dry_run: bool
    rows: int
    created: int  # in a dry run: would be created
    skipped_existing: int  # already imported (same source id)
    by_type: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    unknown_values: dict[str, list[str]] = field(default_factory=dict)


# -- checking --------------------------------------------------------------------------------
@dataclass
class _Lookups:
    types: dict[str, RequestType]
    users: dict[str, int]
    teams: dict[str, int]
    known_types: str


def _lookups(session: Session) -> _Lookups:
    types: dict[str, RequestType] = {}
    for request_type in session.scalars(sa.select(RequestType)):
        types[request_type.slug] = request_type
        types.setdefault(request_type.name.lower(), request_type)
    return _Lookups(
        types=types,
        users=people.user_ids_by_email(session=session),
        teams=people.team_ids_by_slug(session=session),
        known_types=", ".join(sorted({t.slug for t in types.values()})),
    )


class _Checker:
    """Turns raw records into ticket rows, collecting problems (by row and column) and warnings."""

    def __init__(self, mapping: ImportMapping, lookups: _Lookups, now: dt.datetime) -> None:
        self.mapping = mapping
        self.lookups = lookups
        self.now = now
        self.problems = Problems()
        self.warnings: Counter[str] = Counter()
        self.unknown: dict[str, set[str]] = defaultdict(set)
        self.record = Record(0, {}, {})

    def bad(self, name: str, reason: str) -> None:
        self.problems.add(self.record.row, self.record.columns.get(name) or name, reason)

    def attempt(self, name: str, parse: Callable[[str], T], default: T) -> T:
        """``parse(the field's text)``; a ValueError becomes a problem for that field."""
        try:
            return parse(cell_text(self.record.values.get(name)))
        except ValueError as exc:
            self.bad(name, str(exc))
            return default

    def check(self, record: Record) -> dict[str, Any] | None:
        self.record = record
        before = self.problems.count
        text = {name: cell_text(value) for name, value in record.values.items() if name != "labels"}
        for name in REQUIRED:
            if not text.get(name):
                self.bad(name, "required")
        labels = record.values.get("labels")
        for name, value in (*text.items(), ("labels", " ".join(map(str, labels or [])))):
            if "\x00" in value:  # PostgreSQL cannot store it in text
                self.bad(name, "contains a NUL character, which text cannot hold")
        limits = {"source_id": 180, "title": 300, "description": 50_000}
        for name, limit in limits.items():
            if len(text.get(name, "")) > limit:
                self.bad(name, f"at most {limit:,} characters")
        request_type = self.attempt("type", self._type, None)
        priority = self.attempt("priority", self._value("priority", "P3"), "P3")
        created = self.attempt("created_at", self._time, None)
        responded = self.attempt("first_response_at", self._time, None)
        done = self.attempt("done_at", self._time, None)
        status = self.attempt("status", self._value("status", "done" if done else "new"), "new")
        is_done = status == Status.DONE.value
        resolution = text.get("resolution", "").lower() or None
        for problem, name, reason in (
            (created and done and done < created, "done_at", "is before created_at"),
            (created and responded and responded < created, "first_response_at", "is before created_at"),
            (is_done and not done, "done_at", "a done ticket needs the time it was done"),
            (resolution and resolution not in RESOLUTIONS, "resolution", "manual, self-service or automated"),
            (resolution and not is_done, "resolution", f"only done tickets have one (status is {status})"),
        ):  # fmt: skip
            if problem:
                self.bad(name, reason)
        effort = self._effort()
        labels = self._labels(record.values.get("labels"))
        if self.problems.count > before or request_type is None or created is None:
            return None
        finished = done if is_done else None
        first_due, done_due = _due(request_type, priority, created)
        return {
            "source_id": f"{self.mapping.source_prefix}:{text['source_id']}",
            "type_id": request_type.id,
            "title": text["title"],
            "description": text.get("description", ""),
            "priority": priority,
            "status": status,
            "labels": labels,
            "requester_user_id": self._known("requester", text.get("requester_email")),
            "assignee_user_id": self._known("assignee", text.get("assignee_email")),
            "requesting_team_id": self._known("requesting_team", text.get("requesting_team")),
            "assignee_team_id": self._known("team", text.get("team"))
            or request_type.default_team_id,
            "resolution": (resolution or Resolution.MANUAL.value) if is_done else None,
            "effort_minutes": effort,
            "created_at": created,
            "updated_at": max(t for t in (created, responded, done) if t is not None),
            "first_response_at": responded or (done if status != Status.NEW.value else None),
            "done_at": finished,
            "time_to_done_s": int((finished - created).total_seconds()) if finished else None,
            "first_response_due_at": first_due,
            "done_due_at": done_due,
        }

    def _type(self, raw: str) -> RequestType | None:
        if not raw:
            return None
        known = self.lookups.known_types
        mapped = self.mapping.types.get(raw.lower())
        if mapped is not None and mapped.lower() not in self.lookups.types:
            raise ValueError(f"the mapping sends {raw!r} to {mapped!r}, not a type ({known})")
        found = self.lookups.types.get((mapped or raw).lower())
        if found is None and "*" in self.mapping.types:
            found = self.lookups.types.get(self.mapping.types["*"].lower())
        if found is None:
            raise ValueError(
                f"unknown request type {raw!r}; known types: {known}. Map it in the mapping's "
                '"types" ({"Task": "other"}; a "*" entry catches the rest)'
            )
        return found

    def _value(self, name: str, default: str) -> Callable[[str], str]:
        key = "statuses" if name == "status" else "priorities"
        values = self.mapping.statuses if name == "status" else self.mapping.priorities

        def parse(raw: str) -> str:
            found = values.get(raw.lower()) or values.get("*") if raw else default
            if found is None:
                raise ValueError(f"unknown {name} {raw!r}; map it in the mapping's {key!r}")
            return found

        return parse

    def _time(self, raw: str) -> dt.datetime | None:
        if not raw:
            return None
        try:
            parsed = dt.datetime.fromisoformat(raw)
        except ValueError:
            for pattern in self.mapping.date_formats:
                with contextlib.suppress(ValueError):
                    parsed = dt.datetime.strptime(raw, pattern)  # naive: the zone is set below
                    break
            else:
                raise ValueError(
                    f"not a date and time: {raw!r} (use ISO 8601, e.g. 2026-03-01T14:30:00Z)"
                ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=self.mapping.time_zone)
        parsed = parsed.astimezone(dt.UTC)
        if parsed > self.now + dt.timedelta(minutes=5):
            raise ValueError(f"is in the future ({parsed.isoformat()})")
        return parsed

    def _effort(self) -> int:
        name = (
            "effort_minutes"
            if cell_text(self.record.values.get("effort_minutes"))
            else "effort_seconds"
        )
        per_minute = 1 if name == "effort_minutes" else 60

        def parse(raw: str) -> int:
            if not raw:
                return 0
            try:
                minutes = round((int(raw) if per_minute == 1 else float(raw)) / per_minute)
            except ValueError:
                raise ValueError(f"not a whole number: {raw!r}") from None
            if minutes < 0:
                raise ValueError("effort cannot be negative")
            if minutes > MAX_EFFORT_MINUTES:
                raise ValueError(f"{minutes} minutes is more than 10,000 hours: surely a mistake")
            return minutes

        return self.attempt(name, parse, 0)

    def _labels(self, raw: Any) -> list[str]:
        items = raw if isinstance(raw, list) else [raw]
        labels = {
            part.lower() for item in items for part in re.split(r"[\s,;]+", cell_text(item)) if part
        }
        if any(len(label) > 50 for label in labels) or len(labels) > 20:
            self.bad("labels", "at most 20 labels of at most 50 characters each")
        return sorted(labels)

    def _known(self, kind: str, raw: str | None) -> int | None:
        """A user (by email) or a team (by slug) that exists here; else empty and a warning."""
        if not raw:
            return None
        is_team = kind.endswith("team")
        names = self.mapping.teams if is_team else self.mapping.users
        key = names.get(raw.lower(), raw).lower()
        found = (self.lookups.teams if is_team else self.lookups.users).get(key)
        if found is None:
            self.warnings[f"unknown_{kind}"] += 1
            self.unknown[kind].add(raw)
        return found


# -- the use case ----------------------------------------------------------------------------
def require_importer(actor: Actor) -> None:
    require_role(actor, *PRIVILEGED, action="importing ticket history")


def import_tickets(
    *,
    session: Session,
    actor: Actor,
    data: bytes | str,
    fmt: str,
    mapping: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    now: dt.datetime | None = None,
) -> ImportReport:
    """Check a whole file, then write its new tickets in bulk (nothing at all if a row is bad)."""
    require_importer(actor)
    rules = build_mapping(fmt, mapping)
    records = read_records(decode(data), fmt, rules)
    report_progress = progress or (lambda phase, done, total: None)
    checker = _Checker(rules, _lookups(session), now or utcnow())
    rows: list[dict[str, Any]] = []
    first_row: dict[str, int] = {}
    for index, record in enumerate(records, start=1):
        row = checker.check(record)
        if row is not None:
            if row["source_id"] in first_row:
                checker.problems.add(
                    record.row,
                    record.columns.get("source_id", "source_id"),
                    f"source id appears twice (first in row {first_row[row['source_id']]})",
                )
            else:
                first_row[row["source_id"]] = record.row
                rows.append(row)
        if index % 2000 == 0:
            report_progress("checking", index, len(records))
    report_progress("checking", len(records), len(records))
    checker.problems.raise_if_any()
    existing = _existing(session, [row["source_id"] for row in rows])
    new_rows = [row for row in rows if row["source_id"] not in existing]
    slugs = {t.id: t.slug for t in checker.lookups.types.values()}
    report = ImportReport(
        format=fmt,
        dry_run=dry_run,
        rows=len(records),
        created=len(new_rows),
        skipped_existing=len(rows) - len(new_rows),
        by_type=dict(Counter(slugs[row["type_id"]] for row in new_rows).most_common()),
        by_status=dict(Counter(row["status"] for row in new_rows).most_common()),
        warnings=dict(checker.warnings),
        unknown_values={k: sorted(v)[:10] for k, v in checker.unknown.items()},
    )
    if not dry_run:
        _write(session, actor, new_rows, report, data, report_progress)
    return report


def _existing(session: Session, source_ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(source_ids), 1000):
        chunk = source_ids[start : start + 1000]
        found.update(
            session.scalars(sa.select(Ticket.source_id).where(Ticket.source_id.in_(chunk)))
        )
    return found


def _chunks(rows: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def id_ranges(ids: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted ids as [first, last] runs: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    ranges: list[tuple[int, int]] = []
    for value in ids:
        if ranges and value == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], value)
        else:
            ranges.append((value, value))
    return ranges


def _write(
    session: Session,
    actor: Actor,
    rows: Sequence[dict[str, Any]],
    report: ImportReport,
    data: bytes | str,
    progress: Progress,
) -> None:
    """Bulk inserts: tickets, their status history, one audit entry per ticket, a summary."""
    total = len(rows)
    ids: dict[str, int] = {}
    tickets = Ticket.metadata.tables[Ticket.__tablename__]
    changes = StatusChange.metadata.tables[StatusChange.__tablename__]
    history = ["ticket_id", "from_status", "to_status", "at"]
    for chunk in _chunks(rows):
        session.execute(sa.insert(tickets), chunk)  # one executemany
        # The chunk's ids, and its status history written from them inside the database.
        # (RETURNING would do for the ids, but costs PostgreSQL more than this select.)
        mine = tickets.c.source_id.in_([row["source_id"] for row in chunk])
        session.execute(
            sa.insert(changes).from_select(
                history,
                sa.select(tickets.c.id, sa.null(), sa.literal("new"), tickets.c.created_at).where(
                    mine
                ),
            )
        )
        session.execute(
            sa.insert(changes).from_select(
                history,
                sa.select(
                    tickets.c.id, sa.literal("new"), tickets.c.status, tickets.c.updated_at
                ).where(mine, tickets.c.status != Status.NEW.value),
            )
        )
        for source_id, ticket_id in session.execute(
            sa.select(tickets.c.source_id, tickets.c.id).where(mine)
        ):
            ids[source_id] = ticket_id
        progress("writing", len(ids), total)
    progress("auditing", 0, total)
    audit.record_many(
        session=session,
        actor=actor,
        changes=[
            audit.Change(
                "ticket.import",
                "ticket",
                ids[row["source_id"]],
                after={"source_id": row["source_id"], "status": row["status"]},
            )
            for row in rows
        ],
    )
    raw = data.encode() if isinstance(data, str) else data
    digest = hashlib.sha256(raw).hexdigest()[:16]
    summary = {
        "format": report.format,
        "rows": report.rows,
        "created": report.created,
        "skipped_existing": report.skipped_existing,
        "by_type": report.by_type,
        "warnings": report.warnings,
    }
    audit.record(
        session=session,
        actor=actor,
        action="ticket.import",
        object_type="ticket_import",
        object_id=digest,
        after=summary,
    )
    # Every ticket the import created, as ranges of ids (one range, as a rule): imported
    # tickets have no events of their own, so a subscriber finds them here.
    events.emit(
        session=session,
        type="ticket.imported",
        subject=f"ticket_import:{digest}",
        payload=summary | {"ticket_id_ranges": id_ranges(sorted(ids.values()))},
    )
    progress("auditing", total, total)
