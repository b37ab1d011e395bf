"""`lamplighter template …` and `lamplighter run …`: golden paths from the terminal.

``template run NAME --set key=value`` checks the parameters, starts the run and follows it step
by step until it ends. Locally (the embedded default) the command runs a job worker in-process
while it follows, so no separate ``lamplighter worker`` is needed; with ``--url`` and
``LAMPLIGHTER_TOKEN`` everything goes through the REST API and the server's worker runs it.
Locally commands act as the system (an admin), or as ``--user EMAIL``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from sqlalchemy.orm import Session

from lamplighter.core import identity, jobs, people
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
    run_local,
)
from lamplighter.core.context import Actor
from lamplighter.core.crypto import SecretBox
from lamplighter.core.errors import LamplighterError
from lamplighter.core.settings import get_settings
from lamplighter.selfservice import api, runs, templates

template_app = typer.Typer(
    help="Self-service templates (golden paths): list, show, run, sync.", no_args_is_help=True
)
run_app = typer.Typer(
    help="Template runs: show, approve, reject, retry, reveal secrets.", no_args_is_help=True
)
T = TypeVar("T")
ENDED = frozenset({"succeeded", "failed", "rejected"})
# A run in these waits for a person; following it would wait for them too.
WAITING = frozenset({"awaiting_approval", "awaiting_decision"})
STEP_DONE = frozenset({"succeeded", "skipped", "failed", "compensated", "compensation_failed"})
STYLE = {
    "succeeded": "green",
    "skipped": "dim",
    "failed": "red",
    "compensated": "yellow",
    "compensation_failed": "bold red",
    "running": "cyan",
}
POLL_S = 0.2

UserOpt = Annotated[
    str | None,
    typer.Option("--user", help="Locally, act as this user (email) instead of the system."),
]


def register(app: typer.Typer) -> None:
    app.add_typer(template_app, name="template")
    app.add_typer(run_app, name="run")


def _actor(session: Session, email: str | None) -> Actor:
    if email is None:
        return cli_actor()
    user = identity.require_user_by_email(session=session, email=email, field="--user")
    actor = people.actor_for_user(session=session, user_id=user.id)
    assert actor is not None  # found just above
    return actor


def _json(model: Any) -> dict[str, Any]:
    return dict(model.model_dump(mode="json"))


# -- templates ---------------------------------------------------------------------------------
@template_app.command("list")
def list_(
    ctx: typer.Context,
    owner: Annotated[str | None, typer.Option(help="Only this team's templates (slug).")] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """The templates, by name."""
    columns = ["name", "title", "owner", "approval", "version"]
    if client := remote(ctx):
        params = {"limit": 500} | ({"owner": owner} if owner else {})
        emit(client.call("GET", "/templates", params=params)["items"], output, columns=columns)
        return

    def fetch(session: Session) -> list[dict[str, Any]]:
        rows = templates.list_(session=session)
        if owner:
            team_id = identity.get_team(session=session, slug=owner).id
            rows = [t for t in rows if t.owner_team_id == team_id]
        return [_json(api.template_read(t)) for t in rows]

    emit(run_local(fetch, commit=False), output, columns=columns)


def _template(ctx: typer.Context, name: str) -> dict[str, Any]:
    if client := remote(ctx):
        return dict(client.call("GET", f"/templates/{name}"))
    return run_local(
        lambda s: _json(api.template_detail(s, templates.get(session=s, name=name))), commit=False
    )


def _parameter_rows(schema: Mapping[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required") or [])
    rows = []
    for key, sub in (schema.get("properties") or {}).items():
        sub = sub if isinstance(sub, Mapping) else {}
        kind = sub.get("type", "any")
        if "enum" in sub:
            kind = f"{kind}: " + " | ".join(str(v) for v in sub["enum"])
        rows.append(
            {
                "parameter": key,
                "type": kind if isinstance(kind, str) else "|".join(kind),
                "required": "yes" if key in required else "",
                "default": orjson.dumps(sub["default"]).decode() if "default" in sub else "",
                "help": sub.get("description") or sub.get("title") or "",
            }
        )
    return rows


@template_app.command("show")
def show(ctx: typer.Context, name: str, output: OutputOpt = Output.TABLE) -> None:
    """A template: what it does, its approval policy, its parameters and steps."""
    detail = _template(ctx, name)
    if output == Output.JSON:
        emit(detail, output)
        return
    emit(
        {k: detail[k] for k in ("name", "title", "description", "owner", "approval", "version")}
        | {
            "allowed teams": ", ".join(detail["allowed_teams"]) or "every team",
            "request type": detail["request_type"] or "",
            "steps": ", ".join(f"{s['id']} ({s['action']})" for s in detail["steps"]),
        },
        output,
        title=f"Template {detail['name']}",
    )
    emit(_parameter_rows(detail["parameters"]), output, title="Parameters")


@template_app.command("review")
def review(
    ctx: typer.Context,
    name: str,
    approve: Annotated[bool, typer.Option("--approve", help="Publish the draft.")] = False,
    reject: Annotated[bool, typer.Option("--reject", help="Discard the draft.")] = False,
    reason: Annotated[str, typer.Option(help="Told to the author (needed to reject).")] = "",
    user: UserOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Approve or reject the changes to a template waiting for the platform team's review."""
    if approve == reject:
        fail("say --approve or --reject")
    verb = "approve" if approve else "reject"
    if client := remote(ctx):
        detail = dict(
            client.call("POST", f"/templates/{name}/draft/{verb}", json={"reason": reason})
        )
    else:

        def apply(session: Session) -> dict[str, Any]:
            actor = _actor(session, user)
            if approve:
                template = templates.approve_draft(
                    session=session, actor=actor, name=name, reason=reason
                )
            else:
                template = templates.reject_draft(
                    session=session, actor=actor, name=name, reason=reason
                )
            return _json(api.template_detail(session, template))

        detail = run_local(apply)
    if output == Output.JSON:
        emit(detail, output)
        return
    done = "published as version" if approve else "draft rejected; published version"
    console.print(escape(f"{detail['name']}: {done} {detail['version']}"))


@template_app.command("sync")
def sync(
    ctx: typer.Context,
    directory: Annotated[
        Path, typer.Argument(help="Directory of template *.yaml files.", file_okay=False)
    ],
    output: OutputOpt = Output.TABLE,
) -> None:
    """Create or update a template from every *.yaml file in DIR; report each file's errors."""
    if not directory.is_dir():
        fail(f"{directory} is not a directory")
    if client := remote(ctx):
        report = _sync_remote(client, directory)
    else:

        def apply(session: Session) -> dict[str, Any]:
            result = templates.sync_directory(session=session, actor=cli_actor(), path=directory)
            return {
                "created": result.created,
                "updated": result.updated,
                "unchanged": result.unchanged,
                "errors": [{"field": e.field, "reason": e.reason} for e in result.errors],
            }

        report = run_local(apply)
    if output == Output.JSON:
        emit(report, output)
    else:
        emit(
            {k: ", ".join(report[k]) or "-" for k in ("created", "updated", "unchanged")},
            output,
            title=f"Templates from {directory}",
        )
        for error in report["errors"]:
            err_console.print(escape(f"{error['field']}: {error['reason']}"), soft_wrap=True)
    if report["errors"]:
        raise typer.Exit(1)


def _sync_remote(client: Remote, directory: Path) -> dict[str, Any]:
    report: dict[str, Any] = {"created": [], "updated": [], "unchanged": [], "errors": []}
    for file in sorted(directory.glob("*.yaml")):
        text = file.read_text(encoding="utf-8")
        try:
            name = str(templates.parse_yaml(text).get("name"))
        except LamplighterError as exc:
            report["errors"].append({"field": f"{file.name}: file", "reason": exc.detail})
            continue
        response = client.client.put(f"/templates/{name}", json={"yaml": text})
        if response.status_code == 404:
            response = client.client.post("/templates", json={"yaml": text})
        if response.status_code >= 400:
            body = response.json() if response.content else {}
            for error in body.get("errors") or [{"field": "file", "reason": body.get("detail")}]:
                field = str(error["field"]).removeprefix("body.yaml.").removeprefix("body.")
                report["errors"].append(
                    {"field": f"{file.name}: {field}", "reason": error["reason"]}
                )
            continue
        bucket = "created" if response.status_code == 201 else "updated"
        report[bucket].append(name)
    return report


# -- starting a run ----------------------------------------------------------------------------
def interactive() -> bool:
    """Prompt for missing parameters only when a person is at the keyboard."""
    return sys.stdin.isatty()


def _parse_sets(values: list[str], schema: Mapping[str, Any]) -> dict[str, Any]:
    """``key=value`` pairs; a value is JSON when it parses, else text (always text for a
    string parameter, so ``--set version=1.0`` stays "1.0")."""
    properties = schema.get("properties") or {}
    parsed: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            fail(f"--set {item!r}: write it as key=value")
        kind = (properties.get(key) or {}).get("type")
        if kind == "string":
            parsed[key] = raw
            continue
        try:
            parsed[key] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed[key] = raw
    return parsed


def _prompt_missing(schema: Mapping[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Ask for each missing required parameter, with its description as help (TTY only)."""
    properties = schema.get("properties") or {}
    for key in schema.get("required") or []:
        if key in values:
            continue
        sub = properties.get(key) or {}
        label = key + (f" ({sub['description']})" if sub.get("description") else "")
        if "enum" in sub:
            label += " [" + " | ".join(str(v) for v in sub["enum"]) + "]"
        kind = sub.get("type")
        if kind == "boolean":
            values[key] = typer.confirm(label, default=bool(sub.get("default", False)))
        elif kind == "string":
            values[key] = typer.prompt(label)
        else:
            raw = typer.prompt(label)
            try:
                values[key] = orjson.loads(raw)
            except orjson.JSONDecodeError:
                values[key] = raw
    return values


@template_app.command("run")
def run(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The template's name.")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="A parameter, key=value (JSON or text); repeat for more."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Render every step's input; act on nothing.")
    ] = False,
    team: Annotated[str | None, typer.Option(help="The requesting team (slug).")] = None,
    follow: Annotated[
        bool, typer.Option("--follow/--no-follow", help="Follow the run until it ends.")
    ] = True,
    user: UserOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Start a run of a template and follow it step by step until it ends."""
    schema = _template(ctx, name)["parameters"]
    values = _parse_sets(set_ or [], schema)
    if interactive():
        values = _prompt_missing(schema, values)
    body = {"parameters": values, "dry_run": dry_run, "requesting_team": team}
    if client := remote(ctx):
        detail = client.call("POST", f"/templates/{name}/runs", json=body)
        _follow_and_finish(ctx, detail, follow, output)
        return

    def start(session: Session) -> dict[str, Any]:
        started = runs.start(
            session=session,
            actor=_actor(session, user),
            template_name=name,
            parameters=values,
            dry_run=dry_run,
            requesting_team=team,
        )
        session.flush()
        return _json(api.run_detail(session, started))

    _follow_and_finish(ctx, run_local(start), follow, output)


def _follow_local(detail: dict[str, Any], output: Output) -> dict[str, Any]:
    """Run a job worker in this process while following the run."""
    settings = get_settings()
    db = local_db(settings)
    worker = jobs.Worker(db, settings, name=f"cli-template-run-{detail['id']}")
    thread = worker.start_thread()

    def read() -> dict[str, Any]:
        with db.sessionmaker() as session:
            return _json(api.run_detail(session, runs.get(session=session, run_id=detail["id"])))

    try:
        return _follow(detail, read, output)
    finally:
        worker.stop()
        thread.join(timeout=30)
        db.dispose()


def _follow(
    detail: dict[str, Any], read: Callable[[], dict[str, Any]], output: Output
) -> dict[str, Any]:
    """Poll the run and show each step's status until the run ends or waits for approval."""
    if detail["status"] in ENDED | WAITING:
        return detail
    columns = (
        SpinnerColumn(finished_text="•"),
        TextColumn("{task.description}"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, disable=output == Output.JSON) as progress:
        tasks = {
            step["id"]: progress.add_task(
                escape(f"{step['id']} ({step['action']})"), total=1, status=step["status"]
            )
            for step in detail["steps"]
        }
        try:
            while True:
                over = detail["status"] in ENDED | WAITING
                for step in detail["steps"]:
                    style = STYLE.get(step["status"], "")
                    status = f"[{style}]{step['status']}[/]" if style else step["status"]
                    progress.update(
                        tasks[step["id"]],
                        status=status,
                        completed=1 if over or step["status"] in STEP_DONE else 0,
                    )
                if over:
                    return detail
                time.sleep(POLL_S)
                detail = read()
        except KeyboardInterrupt:
            err_console.print(
                f"stopped following; the run goes on. Follow it with: lamplighter run show "
                f"{detail['id']}"
            )
            raise typer.Exit(130) from None


def _finish(detail: dict[str, Any], output: Output) -> None:
    """Print the run's outcome: outputs and links, or the error (exit code 1)."""
    if output == Output.JSON:
        emit(detail, output)
    else:
        _show_run(detail, output)
    if detail["status"] == "failed":
        fail(f"run {detail['id']} failed: {detail['error']}")
    if detail["status"] == "rejected":
        fail(f"run {detail['id']} was rejected: {detail['decision_reason']}")


def _show_run(detail: dict[str, Any], output: Output) -> None:
    summary = {
        k: detail[k]
        for k in (
            "id",
            "template",
            "status",
            "dry_run",
            "requester",
            "requesting_team",
            "ticket_id",
        )
    }
    if detail["approver"]:
        summary["decided by"] = detail["approver"]
    if detail["decision_reason"]:
        summary["reason"] = detail["decision_reason"]
    if detail["error"]:
        summary["error"] = detail["error"]
    if detail["awaiting"]:
        summary["awaiting approval by"] = ", ".join(detail["awaiting"])
        if detail.get("awaiting_why"):
            summary["why them"] = detail["awaiting_why"]
    if detail.get("waiting_for"):
        summary["waiting for"] = detail["waiting_for"]
    title = f"{'Dry run' if detail['dry_run'] else 'Run'} {detail['id']}"
    if detail["dry_run"]:
        title += " (nothing was created)"
    emit(summary, output, title=title)
    emit(
        [
            {
                "step": s["id"],
                "action": s["action"],
                "status": s["status"],
                "output": s["output"] if s["output"] is not None else "",
                "error": s["error"] or "",
            }
            for s in detail["steps"]
        ],
        output,
        title="Steps",
    )
    if detail["dry_run"]:
        for step in detail["steps"]:
            rendered = orjson.dumps(step["input"], option=orjson.OPT_INDENT_2).decode()
            console.print(
                f"[bold]{escape(step['id'])}[/] input:\n{escape(rendered)}", soft_wrap=True
            )
        return  # the links and entities of a dry run are placeholders
    for link in detail["outputs"].get("links") or []:
        console.print(
            f"[bold]{escape(str(link.get('title')))}[/]: {escape(str(link.get('url')))}",
            soft_wrap=True,
        )
    for entity in detail["outputs"].get("entities") or []:
        console.print(f"created: {escape(str(entity))}", soft_wrap=True)
    hidden = [s["name"] for s in detail["secrets"] if not s["revealed"]]
    if hidden and detail["requester"]:
        console.print(
            f"secrets ({', '.join(hidden)}): show them once with "
            f"`lamplighter run secrets {detail['id']} --user {detail['requester']}` "
            "(remotely, without --user)",
            soft_wrap=True,
        )
    elif hidden:
        console.print(
            f"secrets ({', '.join(hidden)}) were stored, but only a run's requester may see "
            "them; start runs with --user EMAIL to be their requester",
            soft_wrap=True,
        )


# -- runs --------------------------------------------------------------------------------------
def _show(detail: dict[str, Any], output: Output) -> None:
    if output == Output.JSON:
        emit(detail, output)
    else:
        _show_run(detail, output)


def _run_call(
    ctx: typer.Context,
    method: str,
    path: str,
    local: Callable[[Session], Any],
    *,
    json: dict[str, Any] | None = None,
    commit: bool = True,
) -> dict[str, Any]:
    """One run use case, remotely through the API or locally; returns the run's detail."""
    if client := remote(ctx):
        return dict(client.call(method, path, **({"json": json} if json is not None else {})))

    def apply(session: Session) -> dict[str, Any]:
        found = local(session)
        session.flush()
        return _json(api.run_detail(session, found))

    return run_local(apply, commit=commit)


@run_app.command("list")
def list_runs(
    ctx: typer.Context,
    template: Annotated[str | None, typer.Option(help="Only runs of this template.")] = None,
    status: Annotated[str | None, typer.Option(help="awaiting_approval, failed, … .")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Runs, newest first."""
    columns = ["id", "template", "status", "dry_run", "requester", "requesting_team", "created_at"]
    if client := remote(ctx):
        params = {"template": template, "status": status, "limit": limit}
        rows = client.call("GET", "/runs", params={k: v for k, v in params.items() if v})
        emit(rows["items"], output, columns=columns)
        return

    def fetch(session: Session) -> list[dict[str, Any]]:
        template_id = templates.get(session=session, name=template).id if template else None
        found = runs.list_(session=session, template_id=template_id, status=status, limit=limit)
        return [_json(api.run_read(session, r)) for r in found]

    emit(run_local(fetch, commit=False), output, columns=columns)


@run_app.command("show")
def show_run(ctx: typer.Context, run_id: int, output: OutputOpt = Output.TABLE) -> None:
    """A run: each step's status, output and error, the outputs and the journal ticket."""
    detail = _run_call(
        ctx, "GET", f"/runs/{run_id}", lambda s: runs.get(session=s, run_id=run_id), commit=False
    )
    _show(detail, output)


@run_app.command("approve")
def approve(
    ctx: typer.Context,
    run_id: int,
    reason: Annotated[str, typer.Option(help="A note for the requester.")] = "",
    follow: Annotated[
        bool, typer.Option("--follow/--no-follow", help="Follow the run until it ends.")
    ] = True,
    user: UserOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Let a run waiting for approval go ahead (and follow it)."""
    detail = _run_call(
        ctx,
        "POST",
        f"/runs/{run_id}/approve",
        lambda s: runs.approve(session=s, actor=_actor(s, user), run_id=run_id, reason=reason),
        json={"reason": reason},
    )
    _follow_and_finish(ctx, detail, follow, output)


@run_app.command("reject")
def reject(
    ctx: typer.Context,
    run_id: int,
    reason: Annotated[str, typer.Option(help="Why; the requester reads it.")],
    user: UserOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """End a run waiting for approval, with the reason."""
    detail = _run_call(
        ctx,
        "POST",
        f"/runs/{run_id}/reject",
        lambda s: runs.reject(session=s, actor=_actor(s, user), run_id=run_id, reason=reason),
        json={"reason": reason},
    )
    _show(detail, output)


@run_app.command("retry")
def retry(
    ctx: typer.Context,
    run_id: int,
    follow: Annotated[
        bool, typer.Option("--follow/--no-follow", help="Follow the run until it ends.")
    ] = True,
    user: UserOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Queue a failed run again from its failed step (after fixing the cause)."""
    detail = _run_call(
        ctx,
        "POST",
        f"/runs/{run_id}/retry",
        lambda s: runs.retry(session=s, actor=_actor(s, user), run_id=run_id),
    )
    _follow_and_finish(ctx, detail, follow, output)


def _follow_and_finish(
    ctx: typer.Context, detail: dict[str, Any], follow: bool, output: Output
) -> None:
    if follow and detail["status"] not in ENDED | WAITING:
        if client := remote(ctx):
            run_id = detail["id"]
            detail = _follow(detail, lambda: client.call("GET", f"/runs/{run_id}"), output)
        else:
            detail = _follow_local(detail, output)
    _finish(detail, output)


@run_app.command("secrets")
def reveal(
    ctx: typer.Context, run_id: int, user: UserOpt = None, output: OutputOpt = Output.TABLE
) -> None:
    """Show the run's secrets once (to its requester); they are not shown again."""
    if client := remote(ctx):
        shown = dict(client.call("POST", f"/runs/{run_id}/secrets/reveal")["secrets"])
    else:
        if user is None:
            fail("secrets are shown to the run's requester only: pass --user <their email>")
        box = SecretBox(get_settings().effective_secret_key())
        shown = run_local(
            lambda s: runs.reveal_secrets(session=s, actor=_actor(s, user), run_id=run_id, box=box)
        )
    emit(shown, output, title=f"Secrets of run {run_id} (shown once; store them now)")
