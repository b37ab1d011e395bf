"""`lamplighter ticket …`: open tickets, read the queues, import history, report on toil.

Every command works on the local database (as the system, like the other local commands), or
on a remote server with ``--url`` and ``LAMPLIGHTER_TOKEN`` through the REST API.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.orm import Session

from lamplighter.core import identity
from lamplighter.core.clikit import (
    Output,
    OutputOpt,
    Remote,
    cli_actor,
    console,
    emit,
    err_console,
    fail,
    local_db,
    remote,
)
from lamplighter.core.errors import LamplighterError
from lamplighter.tickets import analytics, import_formats, imports, service
from lamplighter.tickets.api import read_many

ticket_app = typer.Typer(
    help="The request journal: tickets, queues, imports, toil.", no_args_is_help=True
)
T = TypeVar("T")
BRIEF = ["id", "type", "priority", "status", "title", "requesting_team", "assignee", "breach"]
CREATED = [*BRIEF, "requester", "team", "done_due_at"]
DateOpt = Annotated[
    dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="A day, YYYY-MM-DD (UTC).")
]


def register(app: typer.Typer) -> None:
    app.add_typer(ticket_app, name="ticket")


def _local(func: Callable[[Session], T], *, commit: bool = True) -> T:
    db = local_db()
    try:
        with db.sessionmaker() as session:
            result = func(session)
            if commit:
                session.commit()
            return result
    except LamplighterError as exc:
        for error in exc.errors[1:]:  # one line each; the first is in the message below
            err_console.print(escape(f"  {error.field}: {error.reason}"), soft_wrap=True)
        first = exc.errors[0] if exc.errors else None
        fail(
            exc.detail
            if first is None or first.reason in exc.detail
            else f"{exc.detail} ({first.field}: {first.reason})"
        )
    finally:
        db.dispose()


def _dump(model: Any) -> dict[str, Any]:
    return dict(model.model_dump(mode="json"))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return orjson.dumps(value, default=str).decode()
    return str(value)


def _table_width(cells: list[list[str]]) -> int | None:
    """The width to print a ticket table at: the terminal's (Rich finds it; ``COLUMNS`` wins),
    or, when the output is a pipe or a file, the table's own width, so that no value is cut at
    80 columns there (Rich's fallback width)."""
    if os.environ.get("COLUMNS", "").isdigit() or Console().is_terminal:
        return None
    widths = [max(len(line) for line in column) for column in zip(*cells, strict=True)]
    return max(80, sum(widths) + 3 * len(widths) + 1)


def show(
    data: Any, output: Output, *, columns: list[str] | None = None, title: str | None = None
) -> None:
    """Print tickets like ``clikit.emit``, but never cut a value: as wide as the terminal, and
    in a narrow one long values (titles, emails) fold onto more lines instead of ending in "…".
    ``--output json`` always has every value whole."""
    rows = data if isinstance(data, list) else [data]
    if output == Output.JSON or not rows:
        emit(data, output, columns=columns, title=title)
        return
    columns = columns or list(rows[0].keys())
    if isinstance(data, list):
        table = Table(title=title)
        for column in columns:
            table.add_column(column, overflow="fold")
        cells = [list(columns)] + [[_text(row.get(c)) for c in columns] for row in rows]
    else:
        table = Table(show_header=False, title=title)
        table.add_column("field", style="bold", overflow="fold")
        table.add_column("value", overflow="fold")
        cells = [[key, _text(data.get(key))] for key in columns]
    for line in cells[1:] if isinstance(data, list) else cells:
        table.add_row(*(escape(cell) for cell in line))
    Console(width=_table_width(cells)).print(table)


@ticket_app.command("new")
def new(
    ctx: typer.Context,
    type_: Annotated[str, typer.Option("--type", help="Request type slug, e.g. database.")],
    title: Annotated[str, typer.Option(help="What is asked for, in a line.")],
    description: Annotated[str, typer.Option(help="Details (Markdown).")] = "",
    priority: Annotated[str, typer.Option(help="P1 (urgent) to P4.")] = "P3",
    team: Annotated[str | None, typer.Option(help="Requesting team (slug).")] = None,
    entity: Annotated[str | None, typer.Option(help="Related catalog entity, e.g. ledger.")] = None,
    label: Annotated[list[str] | None, typer.Option(help="A label; repeat for more.")] = None,
    assignee: Annotated[str | None, typer.Option(help="Email of the assignee.")] = None,
    user: Annotated[
        str | None,
        typer.Option(
            "--user",
            help="Email of the person asking (default: you; for someone else, SREs and admins).",
        ),
    ] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Open a ticket: every request of the SRE team is journaled, however small.

    Locally the command acts as the system, so without --user the requester is "Lamplighter";
    remotely only an SRE's or an admin's token may name someone else with --user.
    """
    body: dict[str, Any] = {
        "type": type_,
        "title": title,
        "description": description,
        "priority": priority.upper(),
        "requesting_team": team,
        "entity": entity,
        "labels": label or [],
        "assignee": assignee,
        "requester": user,
    }
    if client := remote(ctx):
        data = client.call("POST", "/tickets", json=body)
        show(data if output == Output.JSON else {k: data[k] for k in CREATED}, output)
        return

    def create(session: Session) -> dict[str, Any]:
        ticket = service.create(
            session=session, actor=cli_actor(), data=service.TicketInput(**body)
        )
        return _dump(read_many(session, [ticket])[0])

    data = _local(create)
    show(data if output == Output.JSON else {k: data[k] for k in CREATED}, output)


@ticket_app.command("list")
def list_(
    ctx: typer.Context,
    view: Annotated[str, typer.Option(help="triage, mine, team, breaching or all.")] = "all",
    team: Annotated[str | None, typer.Option(help="Assigned team (slug), for --view team.")] = None,
    user: Annotated[
        str | None, typer.Option(help="Whose tickets --view mine shows (local mode).")
    ] = None,
    type_: Annotated[str | None, typer.Option("--type", help="Request type slug.")] = None,
    status: Annotated[str | None, typer.Option(help="new, triaged, in_progress, … .")] = None,
    priority: Annotated[str | None, typer.Option(help="P1 to P4.")] = None,
    label: Annotated[str | None, typer.Option(help="Only tickets with this label.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    output: OutputOpt = Output.TABLE,
) -> None:
    """A queue, oldest first: triage (new), mine, a team's, breaching (past targets), or all."""
    if view not in {"all", "triage", "mine", "team", "breaching"}:
        fail("--view is one of triage, mine, team, breaching, all")
    if view == "team" and not team:
        fail("--view team needs --team <slug>")
    if client := remote(ctx):
        params: dict[str, Any] = {"view": view, "team": team, "type": type_, "status": status}
        params |= {"priority": priority, "label": label, "limit": limit}
        rows = client.call("GET", "/tickets", params={k: v for k, v in params.items() if v})
        show(rows["items"], output, columns=BRIEF)
        return

    def fetch(session: Session) -> list[dict[str, Any]]:
        user_id = None
        if view == "mine":
            if not user:
                fail("locally, --view mine needs --user <email> (remotely it is the token's user)")
            user_id = identity.require_user_by_email(session=session, email=user, field="--user").id
        filters = service.QueueFilters(
            view=view,
            user_id=user_id,
            team_id=identity.get_team(session=session, slug=team).id if team else None,
            type_id=service.get_type(session=session, slug=type_, field="--type").id
            if type_
            else None,
            status=status,
            priority=priority,
            label=label,
        )
        tickets = service.queue(session=session, filters=filters, after_id=None, limit=limit)
        return [_dump(t) for t in read_many(session, tickets)]

    show(_local(fetch, commit=False), output, columns=BRIEF)


# -- import ----------------------------------------------------------------------------------
@contextmanager
def _progress_bar(show: bool) -> Iterator[imports.Progress | None]:
    if not show:
        yield None
        return
    columns = (
        TextColumn("{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console) as bar:
        labels = {
            "checking": "rows checked",
            "writing": "tickets written",
            "auditing": "audit entries",
        }
        tasks: dict[str, Any] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:  # a dry run never shows the writing bar
                tasks[phase] = bar.add_task(labels.get(phase, phase), total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield update


def _read_mapping(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        mapping = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        fail(f"cannot read the mapping {path}: {exc}")
    if not isinstance(mapping, dict):
        fail(f"the mapping {path} must be a JSON object")
    return mapping


@ticket_app.command("import")
def import_(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="The file to import.", exists=True, dir_okay=False)],
    format_: Annotated[str, typer.Option("--format", help="csv, jira-csv or jira-json.")],
    mapping: Annotated[
        Path | None, typer.Option(help="JSON field and value mapping.", exists=True, dir_okay=False)
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the file and count; write nothing.")
    ] = False,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Import ticket history; the whole file is checked first and imported whole or not at all."""
    if format_ not in import_formats.FORMATS:
        fail(f"--format is one of {', '.join(import_formats.FORMATS)}")
    rules = _read_mapping(mapping)
    data = path.read_bytes()
    if client := remote(ctx):
        with console.status("uploading and importing…", spinner="dots"):
            report = client.call(
                "POST",
                "/tickets/import",
                files={"file": (path.name, data)},
                data={
                    "format": format_,
                    "dry_run": "true" if dry_run else "false",
                    **({"mapping": orjson.dumps(rules).decode()} if rules else {}),
                },
                timeout=600,
            )
        _show_report(report, output)
        return

    def run(session: Session) -> imports.ImportReport:
        with _progress_bar(output == Output.TABLE) as progress:
            return imports.import_tickets(
                session=session,
                actor=cli_actor(),
                data=data,
                fmt=format_,
                mapping=rules,
                dry_run=dry_run,
                progress=progress,
            )

    _show_report(dataclasses.asdict(_local(run, commit=not dry_run)), output)


def _show_report(report: dict[str, Any], output: Output) -> None:
    if output == Output.JSON:
        emit(report, output)
        return
    verb = "would create" if report["dry_run"] else "created"
    summary = {
        "rows": report["rows"],
        verb: report["created"],
        "skipped as already imported": report["skipped_existing"],
        "by type": ", ".join(f"{k} {v}" for k, v in report["by_type"].items()),
        "by status": ", ".join(f"{k} {v}" for k, v in report["by_status"].items()),
    }
    title = "Ticket import (dry run: nothing written)" if report["dry_run"] else "Ticket import"
    emit(summary, output, title=title)
    for kind, count in report["warnings"].items():
        seen = ", ".join(report["unknown_values"].get(kind.removeprefix("unknown_"), []))
        console.print(
            escape(f"warning: {count} row(s) name an {kind.replace('_', ' ')}, left empty: {seen}"),
            style="yellow",
            soft_wrap=True,
        )


# -- report ----------------------------------------------------------------------------------
@ticket_app.command("report")
def report(
    ctx: typer.Context,
    since: DateOpt = None,
    until: DateOpt = None,
    team: Annotated[str | None, typer.Option(help="Only tickets assigned to this team.")] = None,
    csv: Annotated[
        Path | None, typer.Option("--csv", help="Also write the per-type table to this CSV file.")
    ] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Toil analytics: per request type, automation candidates, demand per team, load per person."""
    params = {
        "since": since.date().isoformat() if since else None,
        "until": until.date().isoformat() if until else None,
        "team": team,
    }
    if client := remote(ctx):
        query = {k: v for k, v in params.items() if v}
        data = client.call("GET", "/tickets/analytics", params=query)
        if csv is not None:
            _write_csv(csv, _remote_csv(client, query))
    else:

        def build(session: Session) -> tuple[dict[str, Any], str]:
            result = analytics.toil_report(
                session=session,
                since=since.date() if since else None,
                until=until.date() if until else None,
                team=team,
            )
            return orjson.loads(orjson.dumps(dataclasses.asdict(result))), analytics.types_csv(
                result
            )

        data, text = _local(build, commit=False)
        if csv is not None:
            _write_csv(csv, text)
    _show_toil(data, output)


def _remote_csv(client: Remote, query: dict[str, Any]) -> str:
    try:
        response = client.client.get("/tickets/analytics.csv", params=query)
    except httpx.HTTPError as exc:
        fail(f"cannot reach the server: {exc}")
    if response.status_code >= 400:
        fail(f"HTTP {response.status_code}: {response.text[:200]}")
    return response.text


def _write_csv(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {path}: {exc}")


def _show_toil(data: dict[str, Any], output: Output) -> None:
    if output == Output.JSON:
        emit(data, output)
        return
    totals = data["totals"]
    console.print(
        f"[bold]Toil {data['since']} to {data['until']}[/]"
        + (f" for team {escape(data['team'])}" if data["team"] else "")
        + f": {totals['count']} tickets, {totals['effort_minutes'] / 60:.0f} hours, "
        f"{totals['hands_off_share']:.0%} resolved by self-service or automation"
    )
    emit(
        [
            {
                "type": t["type"],
                "count": t["count"],
                "effort h": round(t["effort_minutes_total"] / 60, 1),
                "median effort min": t["effort_minutes_median"],
                "median to done h": _hours(t["time_to_done_median_s"]),
                "p90 to done h": _hours(t["time_to_done_p90_s"]),
                "hands-off": f"{t['hands_off_share']:.0%}",
            }
            for t in data["types"]
        ],
        output,
        title="Per request type",
    )
    emit(
        [
            {k: c[k] for k in ("type", "count", "manual_share", "effort_minutes_median")}
            | {"score h": round(c["score_minutes"] / 60, 1)}
            for c in data["automation_candidates"]
        ],
        output,
        title="Automation candidates (count x median effort, mostly manual types)",
    )
    emit(data["requesting_teams"][:10], output, title="Demand per requesting team (top 10)")
    emit(
        [
            {k: a[k] for k in ("user", "assigned", "done", "time_zone")}
            | {
                "logged h": round(a["effort_minutes_logged"] / 60, 1),
                "out of hours": f"{a['out_of_hours_share']:.0%}",
            }
            for a in data["assignees"]
        ],
        output,
        title="Load per person",
    )


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 1)
