"""Reading ticket history files: a plain CSV, a Jira CSV export or a Jira JSON (REST search)
export, into records of raw values, and the problems found on the way.

Every format becomes records of raw values through a *field mapping* (source column or JSON path
→ ticket field) and *value maps* (Jira issue type → request type slug, Jira status → status,
Jira priority → P1..P4, source user → email). Each problem is reported with its row and column.

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
import csv
import io
import re
import zoneinfo
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from lamplighter.core.errors import FieldError, ValidationFailed
from lamplighter.tickets.models import Priority, Resolution, Status

FORMATS = ("csv", "jira-csv", "jira-json")
PLAIN_COLUMNS = tuple(
    "source_id type title description priority status requester_email requesting_team "  # noqa: SIM905 - reads better than 16 lines
    "assignee_email team labels created_at first_response_at done_at resolution effort_minutes".split()
)
FIELDS = frozenset(PLAIN_COLUMNS) | {"effort_seconds"}
REQUIRED = ("source_id", "type", "title", "created_at")
MAX_EFFORT_MINUTES = 10_000 * 60  # more than 10,000 hours on one ticket is a typo
MAX_ERRORS = 100
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
class Record:
    row: int
    values: dict[str, Any]
    columns: dict[str, str]


class Problems:
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


def fail(column: str, reason: str, row: int = 1) -> ImportFailed:
    problems = Problems()
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
            raise fail("file", f"the file is {name}; save it as UTF-8 and import it again")
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise fail(
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
        raise fail("header", f"not a CSV file: {exc}") from exc
    if not any(header):
        raise fail("header", "the file is empty; the first line must name the columns")
    positions: dict[str, list[int]] = defaultdict(list)
    for index, name in enumerate(header):
        positions[name].append(index)
    problems = Problems()
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
        raise fail("file", f"not valid JSON: {exc}") from exc
    issues = document.get("issues") if isinstance(document, dict) else document
    if not isinstance(issues, list):
        raise fail("file", 'expected a Jira search export: {"issues": [...]}')
    records = []
    for number, issue in enumerate(issues, start=1):
        if not isinstance(issue, dict):
            raise fail("issue", "each issue must be an object", row=number)
        values = {target: _path(issue, path) for target, path in mapping.fields.items()}
        records.append(Record(number, values, dict(mapping.fields)))
    return records


def _path(document: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(document, dict):
            return None
        document = document.get(part)
    return document


def cell_text(value: Any) -> str:
    """A raw value as text: Jira objects give their name, Atlassian documents their text."""
    if isinstance(value, str):
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(cell_text(v) for v in value)
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
