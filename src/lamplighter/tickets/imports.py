"""Import of ticket history from a plain CSV, a Jira CSV export or a Jira JSON (REST search) export.

Every format becomes records of raw values through a *field mapping* (source column or JSON path
→ ticket field) and *value maps* (Jira issue type → request type slug, Jira status → status,
Jira priority → P1..P4, source user → email). A file is checked whole before anything is
written: each problem is reported with its row and column, and one bad row means nothing is
imported. Import is idempotent by source id (``jira:OPS-123``, ``csv:<source_id>``): rows already
imported are skipped and counted.

Mapping example for a Jira CSV whose issue types and people need translating::

    {"types": {"Task": "other", "Access": "access-grant", "*": "other"},
     "users": {"Jane Doe": "jane@example.com"},
     "time_zone": "Europe/Oslo",
     "fields": {"requesting_team": "Custom field (Team)"}}

Timestamps without an offset are read in ``time_zone`` (default UTC): Jira's CSV export writes
local times in the exporting user's zone.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import hashlib
import io
import re
import zoneinfo
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.core import audit, events
from lamplighter.core.authz import PRIVILEGED, require_role
from lamplighter.core.context import Actor
from lamplighter.core.db import utcnow
from lamplighter.core.errors import FieldError, ValidationFailed
from lamplighter.core.models import Team, User
from lamplighter.tickets.models import (
    Priority,
    RequestType,
    Resolution,
    Status,
    StatusChange,
    Ticket,
)
from lamplighter.tickets.service import _due

FORMATS = ("csv", "jira-csv", "jira-json")
PLAIN_COLUMNS = tuple(
    "source_id type title description priority status requester_email requesting_team "  # noqa: SIM905 - reads better than 16 lines
    "assignee_email team labels created_at first_response_at done_at resolution effort_minutes".split()
)
FIELDS = frozenset(PLAIN_COLUMNS) | {"effort_seconds"}
REQUIRED = ("source_id", "type", "title", "created_at")
MAX_EFFORT_MINUTES = 10_000 * 60  # more than 10,000 hours on one ticket is a typo
MAX_ERRORS = 100
CHUNK = 5000
Progress = Callable[[str, int, int], None]
T = TypeVar("T")
RESOLUTIONS = frozenset(r.value for r in Resolution)


def _names(targets: Mapping[str, str]) -> dict[str, str]:
    """{"done": "closed, resolved"} -> {"done": "done", "closed": "done", "resolved": "done"}."""
    return {
        name.lower(): target
        for target, names in targets.items()
        for name in [target, *names.split(", ")]
        if name
    }


# Jira's (and other trackers') usual names, matched case-insensitively; a mapping adds more.
STATUS_NAMES = _names(
    {
        "new": "to do, open, backlog",
        "triaged": "reopened, selected for development",
        "in_progress": "in progress, in review",
        "waiting": "waiting for customer, waiting for support, pending, blocked, on hold",
        "done": "closed, resolved, completed",
        "rejected": "won't do, declined, cancelled, canceled, duplicate",
    }
)
PRIORITY_NAMES = _names(
    {
        "P1": "blocker, highest, critical",
        "P2": "high, major",
        "P3": "medium",
        "P4": "low, minor, lowest, trivial",
    }
)
DEFAULT_FIELDS: dict[str, dict[str, str]] = {
    "csv": {name: name for name in PLAIN_COLUMNS},
    "jira-csv": {
        "source_id": "Issue key",
        "title": "Summary",
        "description": "Description",
        "type": "Issue Type",
        "priority": "Priority",
        "status": "Status",
        "requester_email": "Reporter",
        "assignee_email": "Assignee",
        "created_at": "Created",
        "done_at": "Resolved",
        "labels": "Labels",
        "effort_seconds": "Time Spent (seconds)",
    },
    "jira-json": {
        "source_id": "key",
        "title": "fields.summary",
        "description": "fields.description",
        "type": "fields.issuetype.name",
        "priority": "fields.priority.name",
        "status": "fields.status.name",
        "requester_email": "fields.reporter.emailAddress",
        "assignee_email": "fields.assignee.emailAddress",
        "created_at": "fields.created",
        "done_at": "fields.resolutiondate",
        "labels": "fields.labels",
        "effort_seconds": "fields.timespent",
    },
}
JIRA_DATE_FORMATS = ["%d/%b/%y %I:%M %p", "%d/%b/%Y %I:%M %p", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M"]
MAPPING_KEYS = frozenset(
    "fields types statuses priorities users teams time_zone date_formats source_prefix".split()  # noqa: SIM905
)


class ImportFailed(ValidationFailed):
    """The file has problems; each is a FieldError named ``row N.column``."""


@dataclass
class ImportMapping:
    fields: dict[str, str]
    user_fields: frozenset[str]  # named by the caller: their columns must exist
    types: dict[str, str]
    statuses: dict[str, str]
    priorities: dict[str, str]
    users: dict[str, str]
    teams: dict[str, str]
    time_zone: zoneinfo.ZoneInfo
    date_formats: list[str]
    source_prefix: str


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


@dataclass
class Record:
    row: int
    values: dict[str, Any]
    columns: dict[str, str]


class _Problems:
    def __init__(self) -> None:
        self.items: list[FieldError] = []
        self.count = 0

    def add(self, row: int, column: str, reason: str) -> None:
        self.count += 1
        if len(self.items) < MAX_ERRORS:
            self.items.append(FieldError(f"row {row}.{column}", reason))

    def error(self) -> ImportFailed:
        more = f" (the first {MAX_ERRORS} are listed)" if self.count > MAX_ERRORS else ""
        first = self.items[0]
        return ImportFailed(
            f"{self.count} problem(s) in the file{more}; nothing was imported. "
            f"First: {first.field}: {first.reason}",
            errors=self.items,
        )

    def raise_if_any(self) -> None:
        if self.count:
            raise self.error()


def _fail(column: str, reason: str, row: int = 1) -> ImportFailed:
    problems = _Problems()
    problems.add(row, column, reason)
    return problems.error()


# -- mapping ---------------------------------------------------------------------------------
def build_mapping(fmt: str, overrides: Mapping[str, Any] | None = None) -> ImportMapping:
    """The format's defaults with the caller's mapping laid over them (checked)."""
    if fmt not in FORMATS:
        raise ValidationFailed.one("format", f"must be one of {', '.join(FORMATS)}")
    given = dict(overrides or {})
    unknown = sorted(set(given) - MAPPING_KEYS)
    if unknown:
        raise ValidationFailed.one(
            f"mapping.{unknown[0]}", f"unknown key; known keys: {', '.join(sorted(MAPPING_KEYS))}"
        )
    fields = dict(DEFAULT_FIELDS[fmt])
    user_fields = _str_map(given.get("fields"), "fields")
    for target, source in user_fields.items():
        if target not in FIELDS:
            raise ValidationFailed.one(
                f"mapping.fields.{target}",
                f"not a ticket field; fields: {', '.join(sorted(FIELDS))}",
            )
        if source:
            fields[target] = source
        else:
            fields.pop(target, None)  # "": do not read this field
    statuses = {**STATUS_NAMES, **_lower(_str_map(given.get("statuses"), "statuses"))}
    for key, value in statuses.items():
        if value not in {s.value for s in Status}:
            raise ValidationFailed.one(f"mapping.statuses.{key}", f"{value!r} is not a status")
    priorities = {**PRIORITY_NAMES, **_lower(_str_map(given.get("priorities"), "priorities"))}
    for key, value in priorities.items():
        if value not in {p.value for p in Priority}:
            raise ValidationFailed.one(f"mapping.priorities.{key}", "map to P1, P2, P3 or P4")
    try:
        zone = zoneinfo.ZoneInfo(str(given.get("time_zone") or "UTC"))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationFailed.one("mapping.time_zone", "not an IANA time zone") from exc
    formats = given.get("date_formats", JIRA_DATE_FORMATS if fmt == "jira-csv" else [])
    if not isinstance(formats, list) or not all(isinstance(f, str) for f in formats):
        raise ValidationFailed.one("mapping.date_formats", "a list of strptime formats")
    prefix = str(given.get("source_prefix") or ("csv" if fmt == "csv" else "jira"))
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,19}", prefix):
        raise ValidationFailed.one("mapping.source_prefix", "1-20 lowercase letters, digits, -")
    return ImportMapping(
        fields=fields,
        user_fields=frozenset(k for k, v in user_fields.items() if v),
        types=_lower(_str_map(given.get("types"), "types")),
        statuses=statuses,
        priorities=priorities,
        users=_lower(_str_map(given.get("users"), "users")),
        teams=_lower(_str_map(given.get("teams"), "teams")),
        time_zone=zone,
        date_formats=formats,
        source_prefix=prefix,
    )


def _str_map(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValidationFailed.one(f"mapping.{name}", "must be an object of strings")
    return dict(value)


def _lower(values: Mapping[str, str]) -> dict[str, str]:
    return {k.strip().lower(): v.strip() for k, v in values.items()}


# -- reading ---------------------------------------------------------------------------------
def decode(data: bytes | str) -> str:
    """UTF-8 text, with or without a byte-order mark; anything else is refused with a reason."""
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    for bom, name in (
        (codecs.BOM_UTF32_LE, "UTF-32"),
        (codecs.BOM_UTF32_BE, "UTF-32"),
        (codecs.BOM_UTF16_LE, "UTF-16"),
        (codecs.BOM_UTF16_BE, "UTF-16"),
    ):
        if data.startswith(bom):
            raise _fail("file", f"the file is {name}; save it as UTF-8 and import it again")
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _fail(
            "encoding",
            f"the file is not UTF-8: byte 0x{data[exc.start]:02X} on line {line} cannot be read "
            "(the file is probably Latin-1 or Windows-1252); save it as UTF-8 and import it again",
            row=line,
        ) from exc


def read_records(text: str, fmt: str, mapping: ImportMapping) -> list[Record]:
    return _json_records(text, mapping) if fmt == "jira-json" else _csv_records(text, fmt, mapping)


def _csv_records(text: str, fmt: str, mapping: ImportMapping) -> list[Record]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader, [])]
    except csv.Error as exc:
        raise _fail("header", f"not a CSV file: {exc}") from exc
    if not any(header):
        raise _fail("header", "the file is empty; the first line must name the columns")
    positions: dict[str, list[int]] = defaultdict(list)
    for index, name in enumerate(header):
        positions[name].append(index)
    problems = _Problems()
    if fmt == "csv":
        for name in header:
            if name not in PLAIN_COLUMNS and name not in mapping.fields.values():
                problems.add(
                    1, name or "(empty)", f"unknown column; columns: {', '.join(PLAIN_COLUMNS)}"
                )
    columns: dict[str, list[int]] = {}
    for target, source in mapping.fields.items():
        if source in positions:
            columns[target] = positions[source]
        elif target in REQUIRED or target in mapping.user_fields:
            problems.add(1, source, f"missing column (needed for {target})")
    problems.raise_if_any()
    records = []
    try:
        for number, cells in enumerate(reader, start=2):
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(header):
                problems.add(number, "*", f"{len(cells)} cells, but the header has {len(header)}")
                continue
            values: dict[str, Any] = {}
            for target, indexes in columns.items():
                found = [cells[i].strip() for i in indexes if cells[i].strip()]
                values[target] = found if target == "labels" else (found[0] if found else "")
            records.append(Record(number, values, {t: mapping.fields[t] for t in columns}))
    except csv.Error as exc:
        problems.add(reader.line_num, "*", f"unreadable CSV: {exc}")
    problems.raise_if_any()
    return records


def _json_records(text: str, mapping: ImportMapping) -> list[Record]:
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise _fail("file", f"not valid JSON: {exc}") from exc
    issues = document.get("issues") if isinstance(document, dict) else document
    if not isinstance(issues, list):
        raise _fail("file", 'expected a Jira search export: {"issues": [...]}')
    records = []
    for number, issue in enumerate(issues, start=1):
        if not isinstance(issue, dict):
            raise _fail("issue", "each issue must be an object", row=number)
        values = {target: _path(issue, path) for target, path in mapping.fields.items()}
        records.append(Record(number, values, dict(mapping.fields)))
    return records


def _path(document: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(document, dict):
            return None
        document = document.get(part)
    return document


def _text(value: Any) -> str:
    """A raw value as text: Jira objects give their name, Atlassian documents their text."""
    if isinstance(value, str):
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(_text(v) for v in value)
    if isinstance(value, dict):
        if value.get("type") == "doc" or "content" in value:
            return _document_text(value).strip()
        for key in ("emailAddress", "name", "value", "key"):
            if isinstance(value.get(key), str):
                return str(value[key]).strip()
        return ""
    return str(value).strip()


def _document_text(node: Any) -> str:
    if isinstance(node, dict):
        own = node.get("text", "") if node.get("type") == "text" else ""
        inner = "".join(_document_text(child) for child in node.get("content", []))
        return own + inner + ("\n" if node.get("type") == "paragraph" else "")
    return ""


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
        users=dict(session.execute(sa.select(sa.func.lower(User.email), User.id)).tuples().all()),
        teams=dict(session.execute(sa.select(Team.slug, Team.id)).tuples().all()),
        known_types=", ".join(sorted({t.slug for t in types.values()})),
    )


class _Checker:
    """Turns raw records into ticket rows, collecting problems (by row and column) and warnings."""

    def __init__(self, mapping: ImportMapping, lookups: _Lookups, now: dt.datetime) -> None:
        self.mapping = mapping
        self.lookups = lookups
        self.now = now
        self.problems = _Problems()
        self.warnings: Counter[str] = Counter()
        self.unknown: dict[str, set[str]] = defaultdict(set)
        self.record = Record(0, {}, {})

    def bad(self, name: str, reason: str) -> None:
        self.problems.add(self.record.row, self.record.columns.get(name) or name, reason)

    def attempt(self, name: str, parse: Callable[[str], T], default: T) -> T:
        """``parse(the field's text)``; a ValueError becomes a problem for that field."""
        try:
            return parse(_text(self.record.values.get(name)))
        except ValueError as exc:
            self.bad(name, str(exc))
            return default

    def check(self, record: Record) -> dict[str, Any] | None:
        self.record = record
        before = self.problems.count
        text = {name: _text(value) for name, value in record.values.items() if name != "labels"}
        for name in REQUIRED:
            if not text.get(name):
                self.bad(name, "required")
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
            if _text(self.record.values.get("effort_minutes"))
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
            part.lower() for item in items for part in re.split(r"[\s,;]+", _text(item)) if part
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
    events.emit(
        session=session, type="ticket.imported", subject=f"ticket_import:{digest}", payload=summary
    )
    progress("auditing", total, total)
