"""How the queue page presents tickets: sortable column headers, ages in one unit, names.

Pure presenters over rows the page has read; the page (``pages.queue_page``) stays thin.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from lamplighter.core.models import User
from lamplighter.tickets.queues import DEFAULT_SORT, QueueOrder, person_name

# (heading, sort key or None): the queue table's columns, in order.
COLUMNS: tuple[tuple[str, str | None], ...] = (
    ("Ticket", "number"),
    ("Title", "title"),
    ("Type", None),
    ("Priority", "priority"),
    ("Status", "status"),
    ("Requester / team", "requester"),
    ("Assignee / team", "assignee"),
    ("Age", "age"),
    ("Targets", "due"),
)
SORT_HELP = {
    "number": "by ticket number",
    "title": "by title",
    "priority": "by priority, P1 first",
    "status": "by status, in life-cycle order",
    "requester": "by requester's name",
    "assignee": "by assignee's name",
    "age": "by age, youngest first",
    "due": "by target time to done, soonest first",
}
# One unit for the whole Age column, chosen by the oldest ticket shown, so that "2 d" never
# stands next to "45 h": minutes while all are under an hour old, hours under 48 hours, else days.
AGE_RULE = (
    "Time since the ticket was opened, in one unit for the whole column: minutes while every "
    "ticket shown is under an hour old, hours while all are under 48 hours, days otherwise "
    "(rounded down)."
)
AGE_UNITS: tuple[tuple[str, int, int], ...] = (  # (unit, seconds in one, use below this age)
    ("min", 60, 3600),
    ("h", 3600, 48 * 3600),
    ("d", 86400, 0),
)


@dataclass(frozen=True)
class Header:
    label: str
    url: str | None  # None: the column does not sort
    aria_sort: str | None  # "ascending" | "descending" when the queue is sorted by it
    help: str


def headers(params: Mapping[str, str], order: QueueOrder) -> list[Header]:
    """The column headers; each sortable one links to its order (a second click reverses it)."""
    result = []
    for label, key in COLUMNS:
        if key is None:
            result.append(Header(label, None, None, ""))
            continue
        current = order.sort == key
        direction = "desc" if current and not order.descending else "asc"
        query = {**params, "sort": key, "dir": direction}
        if key == DEFAULT_SORT and direction == "asc":
            query = {k: v for k, v in query.items() if k not in {"sort", "dir"}}
        aria = ("descending" if order.descending else "ascending") if current else None
        verb = "Reverse the order" if current else "Sort"
        result.append(
            Header(label, "/tickets?" + urlencode(query), aria, f"{verb} {SORT_HELP[key]}")
        )
    return result


def age_unit(created: Iterable[dt.datetime], now: dt.datetime) -> tuple[str, int]:
    """The unit (and its length in seconds) for a column of tickets opened at ``created``."""
    oldest = max((now - when for when in created), default=dt.timedelta(0))
    for unit, size, below in AGE_UNITS:
        if not below or oldest.total_seconds() < below:
            return unit, size
    return AGE_UNITS[-1][0], AGE_UNITS[-1][1]


def age_in(since: dt.datetime, now: dt.datetime, unit: tuple[str, int]) -> str:
    """``since``'s age in the column's unit, rounded down: "45 h", "3 d", "< 1 d"."""
    name, size = unit
    count = max(0, int((now - since).total_seconds())) // size
    return f"{count} {name}" if count else f"< 1 {name}"


def names(users: Mapping[int, User], user_id: int | None) -> tuple[str, str] | None:
    """(name, email) of a person, the name falling back to the email; None for nobody."""
    user = users.get(user_id) if user_id is not None else None
    return (person_name(user), user.email) if user else None


def person_choices(users: Sequence[User], keep: str) -> list[tuple[str, str]]:
    """(email, name) choices for a person picker, keeping an email typed into the URL."""
    choices = [(u.email, person_name(u)) for u in users]
    if keep and keep not in {"me", "none"} and keep not in {email for email, _ in choices}:
        choices.append((keep, keep))
    return choices
