"""``lamplighter schedule …`` (list, show, export-ics) and ``lamplighter oncall now``.

Every command works on the local database, or on a remote server with ``--url`` and
``LAMPLIGHTER_TOKEN`` (through the REST API, with the token's rights).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.orm import Session

from lamplighter.core.clikit import Output, OutputOpt, console, emit, fail, remote, run_local
from lamplighter.core.timefmt import readable

T = TypeVar("T")
schedule_app = typer.Typer(
    help="On-call schedules: show, export as iCalendar.", no_args_is_help=True
)
oncall_app = typer.Typer(help="Who is on call.", no_args_is_help=True)

LIST_COLUMNS = ["id", "team", "name", "time_zone", "layers"]
SHIFT_COLUMNS = ["from", "to", "who", "layer"]
NOW_COLUMNS = ["who", "email", "schedule", "layer", "since", "until"]
MAX_RANGE_DAYS = 93  # what GET /oncall/schedules/{id}/final answers at once
IdArg = Annotated[int, typer.Argument(min=1, help="The schedule's id (schedule list shows it).")]


def _local(func: Callable[[Session], T], *, commit: bool = False) -> T:
    return run_local(func, commit=commit, plugins=False)


def _api() -> Any:
    from lamplighter.oncall import schedule_api  # FastAPI is a heavy import: only when needed

    return schedule_api


def _service() -> Any:
    from lamplighter.oncall import schedules

    return schedules


def _calendars() -> Any:
    from lamplighter.oncall import calendars

    return calendars


def _on_duty() -> Any:
    from lamplighter.oncall import on_duty

    return on_duty


def _parse_at(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        fail(f"--at: {text!r} is not an ISO 8601 time (2027-03-28T09:00:00+02:00)", code=2)
    if moment.tzinfo is None:
        fail("--at: give a time zone (…Z or …+01:00): a time without one is ambiguous", code=2)
    return moment


def _read(session: Session, schedule_id: int) -> dict[str, Any]:
    schedules = _service()
    schedule = schedules.get(session=session, schedule_id=schedule_id)
    return dict(_api().read(session, schedule).model_dump(mode="json"))


def _final(session: Session, schedule_id: int, start: dt.datetime, end: dt.datetime) -> Any:
    view = _service().final(session=session, schedule_id=schedule_id, start=start, end=end)
    return _api().final_read(view).model_dump(mode="json")


def _remote_final(client: Any, schedule_id: int, start: dt.datetime, end: dt.datetime) -> Any:
    """The final schedule over [start, end), asked for in ranges the server answers."""
    shifts: list[dict[str, Any]] = []
    document: dict[str, Any] = {}
    cursor = start
    while cursor < end:
        upto = min(end, cursor + dt.timedelta(days=MAX_RANGE_DAYS))
        params = {"start": cursor.isoformat(), "end": upto.isoformat()}
        document = client.call("GET", f"/oncall/schedules/{schedule_id}/final", params=params)
        _extend(shifts, document["final"])
        cursor = upto
    return {**document, "start": start.isoformat(), "final": shifts}


def _extend(shifts: list[dict[str, Any]], more: list[dict[str, Any]]) -> None:
    """Add the next range's shifts, joining one shift cut by the ranges asked for."""
    for shift in more:
        last = shifts[-1] if shifts else None
        same = ("user_id", "layer")
        if last and last["end"] == shift["start"] and all(last[k] == shift[k] for k in same):
            last["end"] = shift["end"]
        else:
            shifts.append(shift)


@schedule_app.command("list")
def list_(
    ctx: typer.Context,
    team: Annotated[str | None, typer.Option("--team", help="Owning team's slug.")] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Every on-call schedule (of one team with --team)."""
    if client := remote(ctx):
        rows: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 500} | ({"team": team} if team else {})
        while True:
            page = client.call("GET", "/oncall/schedules", params=params)
            rows.extend(page["items"])
            if not page["next_cursor"]:
                break
            params["cursor"] = page["next_cursor"]
    else:

        def fetch(session: Session) -> list[dict[str, Any]]:
            schedules = _service()
            team_id = (
                schedules.team_by_slug(session=session, slug=team, field="--team").id
                if team
                else None
            )
            found: list[dict[str, Any]] = []
            after: int | None = None
            while True:
                page = schedules.list_(session=session, team_id=team_id, after_id=after, limit=500)
                found += [_api().read(session, s).model_dump(mode="json") for s in page]
                if len(page) < 500:
                    return found
                after = page[-1].id

        rows = _local(fetch)
    if output == Output.JSON:
        emit(rows, output)
        return
    emit(
        [{**row, "layers": ", ".join(layer["name"] for layer in row["layers"])} for row in rows],
        output,
        columns=LIST_COLUMNS,
    )


@schedule_app.command("show")
def show(
    ctx: typer.Context,
    schedule_id: IdArg,
    days: Annotated[
        int, typer.Option("--days", min=1, max=366, help="How many days ahead to show.")
    ] = 7,
    output: OutputOpt = Output.TABLE,
) -> None:
    """A schedule and who is on call over the next days (overrides included), in its zone."""
    start = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    end = start + dt.timedelta(days=days)
    if client := remote(ctx):
        schedule = client.call("GET", f"/oncall/schedules/{schedule_id}")
        final = _remote_final(client, schedule_id, start, end)
    else:

        def fetch(session: Session) -> tuple[dict[str, Any], Any]:
            read = _read(session, schedule_id)
            found: list[dict[str, Any]] = []
            cursor = start
            while cursor < end:
                upto = min(end, cursor + dt.timedelta(days=MAX_RANGE_DAYS))
                _extend(found, _final(session, schedule_id, cursor, upto)["final"])
                cursor = upto
            return read, {"start": start.isoformat(), "end": end.isoformat(), "final": found}

        schedule, final = _local(fetch)
    if output == Output.JSON:
        emit({"schedule": schedule, "final": final["final"]}, output)
        return
    zone = schedule["time_zone"]
    emit(
        {
            "id": schedule["id"],
            "name": schedule["name"],
            "team": schedule["team"],
            "time zone": zone,
            "layers": ", ".join(
                f"{layer['name']} ({layer.get('kind', 'rotation')})" for layer in schedule["layers"]
            )
            or "none",
            "feed": "issued" if schedule["feed"] else "none",
        },
        output,
    )
    rows = [
        {
            "from": readable(dt.datetime.fromisoformat(shift["start"]), zone),
            "to": readable(dt.datetime.fromisoformat(shift["end"]), zone),
            "who": shift["display_name"],
            "layer": shift["layer"],
        }
        for shift in final["final"]
    ]
    if not rows:
        console.print(f"Nobody is on call in the next {days} days.")
        return
    emit(rows, output, columns=SHIFT_COLUMNS, title=f"Who is on call, next {days} days")


@schedule_app.command("export-ics")
def export_ics(
    ctx: typer.Context,
    schedule_id: IdArg,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write to this file; default standard output.")
    ] = None,
) -> None:
    """The schedule's final shifts, 30 days back to 90 ahead, as an iCalendar file (what its
    feed serves; import it into a calendar app)."""
    from lamplighter.oncall import ical
    from lamplighter.oncall.shifts import Shift

    calendars = _calendars()
    if client := remote(ctx):
        now = dt.datetime.now(dt.UTC)
        schedule = client.call("GET", f"/oncall/schedules/{schedule_id}")
        final = _remote_final(
            client, schedule_id, now - calendars.FEED_BACK, now + calendars.FEED_AHEAD
        )
        shifts = [
            Shift(
                dt.datetime.fromisoformat(s["start"]),
                dt.datetime.fromisoformat(s["end"]),
                str(s["user_id"]),
                s["layer"],
            )
            for s in final["final"]
        ]
        names = {str(s["user_id"]): s["display_name"] for s in final["final"]}
        text = ical.to_ics(shifts, calendar_name=schedule["name"], names=names, generated_at=now)
    else:

        def fetch(session: Session) -> str:
            schedules = _service()
            schedule = schedules.get(session=session, schedule_id=schedule_id)
            return str(calendars.schedule_feed(session=session, schedule=schedule))

        text = _local(fetch)
    if out is None:
        typer.echo(text.encode("utf-8"), nl=False)  # bytes: the CRLF line ends kept as they are
        return
    try:
        out.write_text(text, encoding="utf-8", newline="")
    except OSError as exc:
        fail(f"cannot write {out}: {exc}")
    console.print(f"Wrote {text.count('BEGIN:VEVENT')} shifts to {out}")


@oncall_app.command("now")
def now(
    ctx: typer.Context,
    team: Annotated[str | None, typer.Option("--team", help="A team's slug.")] = None,
    entity: Annotated[
        str | None,
        typer.Option("--entity", help="A catalog reference (service:default/checkout) or id."),
    ] = None,
    schedule: Annotated[
        int | None, typer.Option("--schedule", min=1, help="A schedule id.")
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="ISO 8601 time with a zone; default now.")
    ] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Who is on call now (or --at): on a schedule, on a team's schedules, or for a catalog
    entity (its team's default escalation policy's first tier, else its team's schedules).
    Without an option, on every schedule of every team."""
    moment = _parse_at(at)
    if sum(value is not None for value in (team, entity, schedule)) > 1:
        fail("give one of --team, --entity and --schedule", code=2)
    everywhere = team is None and entity is None and schedule is None
    if client := remote(ctx):
        asked = {"team": team, "entity": entity, "schedule": schedule}
        params: dict[str, Any] = {"limit": 500} | {k: v for k, v in asked.items() if v is not None}
        if moment is not None:
            params["at"] = moment.isoformat()
        if everywhere:
            rows = _every_schedule_remote(client, params)
        else:
            rows = client.call("GET", "/oncall/now", params=params)["items"]
    else:

        def fetch(session: Session) -> list[dict[str, Any]]:
            if everywhere:
                return _every_schedule_local(session, moment)
            found = _api().now_of(session, schedule=schedule, team=team, entity=entity, at=moment)
            return [_now_row(vars(item)) for item in found]

        rows = _local(fetch)
    if output == Output.JSON:
        emit(rows, output)
        return
    if not rows:
        console.print("Nobody is on call.")
        return
    emit(
        [
            {
                "who": row["display_name"],
                "email": row["email"],
                "schedule": row["schedule_name"] or "(escalation policy)",
                "layer": row["layer"],
                "since": readable(_time(row["since"])) if row["since"] else "",
                "until": readable(_time(row["until"])) if row["until"] else "",
            }
            for row in rows
        ],
        output,
        columns=NOW_COLUMNS,
    )


def _time(value: Any) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)


def _now_row(item: dict[str, Any]) -> dict[str, Any]:
    """A person on call as the API answers it (``OnCallNowRead``)."""
    from lamplighter.oncall.schedule_schemas import OnCallNowRead

    return OnCallNowRead(**item).model_dump(mode="json")


def _every_schedule_local(session: Session, moment: dt.datetime | None) -> list[dict[str, Any]]:
    schedules = _service()
    rows: list[dict[str, Any]] = []
    after: int | None = None
    while True:
        page = schedules.list_(session=session, after_id=after, limit=500)
        for schedule in page:
            found = _on_duty().who_is_on_call(session, schedule_id=schedule.id, at=moment)
            rows += [_now_row(vars(item)) for item in found]
        if len(page) < 500:
            return rows
        after = page[-1].id


def _every_schedule_remote(client: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    listing: dict[str, Any] = {"limit": 500}
    while True:
        page = client.call("GET", "/oncall/schedules", params=listing)
        for schedule in page["items"]:
            query = {**params, "schedule": schedule["id"]}
            rows += client.call("GET", "/oncall/now", params=query)["items"]
        if not page["next_cursor"]:
            return rows
        listing["cursor"] = page["next_cursor"]
