"""Core CLI commands: serve, worker, db, user, team, token, audit, jobs, version."""

from __future__ import annotations

import datetime as dt
import signal
from typing import Annotated, Any

import typer

from lamplighter import __version__
from lamplighter.core import audit, identity, jobs, migrate
from lamplighter.core.clikit import (
    Output,
    OutputOpt,
    cli_actor,
    emit,
    fail,
    local_db,
    remote,
    run_local,
)
from lamplighter.core.schemas import JobRead, TeamRead, TokenRead, UserBrief, UserRead
from lamplighter.core.settings import get_settings

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
user_app = typer.Typer(help="Users.", no_args_is_help=True)
team_app = typer.Typer(help="Teams.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)
jobs_app = typer.Typer(help="The job queue.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("worker")(worker)
    app.command("version")(version)
    app.add_typer(db_app, name="db")
    app.add_typer(user_app, name="user")
    app.add_typer(team_app, name="team")
    app.add_typer(token_app, name="token")
    app.add_typer(audit_app, name="audit")
    app.add_typer(jobs_app, name="jobs")


def _dump(model: Any) -> dict[str, Any]:
    return dict(model.model_dump(mode="json"))


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Do not run jobs in this process.")
    ] = False,
    workers: Annotated[
        int, typer.Option(help="HTTP worker processes (PostgreSQL, or read-heavy SQLite).")
    ] = 1,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Serve the UI and API; runs a job worker in this process unless --no-worker."""
    import uvicorn

    from lamplighter.core.logs import configure

    settings = get_settings()
    configure(settings.log_level, settings.log_json)
    db = local_db(settings)
    job_worker = None
    if not no_worker:
        job_worker = jobs.Worker(db, settings)
        job_worker.start_thread()
    emit(
        {
            "url": f"http://{host}:{port}",
            "api_docs": f"http://{host}:{port}/api/docs",
            "job_worker": not no_worker,
            "http_workers": workers,
        },
        output,
    )
    try:
        uvicorn.run(
            "lamplighter.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=False,
            log_config=None,
            proxy_headers=True,
            timeout_graceful_shutdown=10,
        )
    finally:
        if job_worker is not None:
            job_worker.stop()


def worker(
    batch: Annotated[int, typer.Option(help="Jobs claimed at a time.")] = 0,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Run a job worker (no HTTP). Start several on PostgreSQL; SIGTERM stops it after the current job."""
    from lamplighter.core.logs import configure

    settings = get_settings()
    if batch:
        settings = settings.model_copy(update={"job_batch_size": batch})
    configure(settings.log_level, settings.log_json)
    job_worker = jobs.Worker(local_db(settings), settings)
    signal.signal(signal.SIGTERM, lambda *_: job_worker.stop())
    signal.signal(signal.SIGINT, lambda *_: job_worker.stop())
    job_worker.run_forever()
    emit({"worker": job_worker.worker_id, "processed": job_worker.processed}, output)


def version(ctx: typer.Context, output: OutputOpt = Output.TABLE) -> None:
    """Print the version (and the server's, with --url)."""
    data: dict[str, Any] = {"version": __version__}
    if client := remote(ctx):
        import httpx

        data["server_version"] = (
            httpx.get(client.client.base_url.join("/healthz"), timeout=10).json().get("version")
        )
    emit(data, output)


@db_app.command("upgrade")
def db_upgrade(output: OutputOpt = Output.TABLE) -> None:
    """Bring the database schema to the newest revision."""
    settings = get_settings()
    url = settings.effective_database_url
    migrate.upgrade(url)
    from lamplighter.core.db import make_engine

    engine = make_engine(url)
    emit(
        {
            "database": engine.url.render_as_string(hide_password=True),
            "revision": migrate.current_revision(engine),
        },
        output,
    )
    engine.dispose()


def _run_local(func: Any) -> Any:
    return run_local(func)


@user_app.command("create")
def user_create(
    ctx: typer.Context,
    email: Annotated[str, typer.Option(help="Email address (the login).")],
    name: Annotated[str, typer.Option(help="Display name.")],
    role: Annotated[str, typer.Option(help="admin, sre, member or viewer.")] = "member",
    time_zone: Annotated[str, typer.Option(help="IANA time zone.")] = "UTC",
    password: Annotated[
        bool, typer.Option("--password", help="Prompt for a password for web login.")
    ] = False,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Create a user."""
    secret = (
        typer.prompt("Password", hide_input=True, confirmation_prompt=True) if password else None
    )
    body = {
        "email": email,
        "display_name": name,
        "role": role,
        "time_zone": time_zone,
        "password": secret,
    }
    if client := remote(ctx):
        emit(client.call("POST", "/users", json=body), output)
        return
    user = _run_local(
        lambda s: identity.create_user(
            session=s,
            actor=cli_actor(),
            email=email,
            display_name=name,
            role=role,
            time_zone=time_zone,
            password=secret,
        )
    )
    emit(_dump(UserRead.model_validate(user)), output)


@user_app.command("set-email")
def user_set_email(
    ctx: typer.Context,
    user_id: Annotated[int, typer.Argument(help="The user's id (`catalog hygiene` lists them).")],
    email: Annotated[str, typer.Argument(help="The address to sign in and be notified by.")],
    output: OutputOpt = Output.TABLE,
) -> None:
    """Set a person's e-mail address (admins): for someone imported without one."""
    if client := remote(ctx):
        emit(client.call("PATCH", f"/users/{user_id}", json={"email": email}), output)
        return
    user = _run_local(
        lambda s: identity.update_user(session=s, actor=cli_actor(), user_id=user_id, email=email)
    )
    emit(_dump(UserRead.model_validate(user)), output)


@team_app.command("create")
def team_create(
    ctx: typer.Context,
    slug: Annotated[str, typer.Option(help="Short unique name, e.g. payments.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    lead: Annotated[str, typer.Option(help="Email of the lead (the accountable person).")],
    description: Annotated[str, typer.Option(help="What the team does.")] = "",
    output: OutputOpt = Output.TABLE,
) -> None:
    """Create a team with its lead."""
    body = {"slug": slug, "name": name, "lead_email": lead, "description": description}
    if client := remote(ctx):
        data = client.call("POST", "/teams", json=body)
        emit({k: data[k] for k in ("id", "slug", "name", "lead")}, output)
        return

    def create(session: Any) -> dict[str, Any]:
        team = identity.create_team(session=session, actor=cli_actor(), **body)
        return {
            "id": team.id,
            "slug": team.slug,
            "name": team.name,
            "lead": _dump(UserBrief.model_validate(team.lead)) if team.lead else None,
        }

    emit(_run_local(create), output)


@team_app.command("add-member")
def team_add_member(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="Team slug.")],
    email: Annotated[str, typer.Argument(help="Email of the user to add.")],
    output: OutputOpt = Output.TABLE,
) -> None:
    """Add a user to a team."""
    if client := remote(ctx):
        data = client.call("POST", f"/teams/{slug}/members", json={"email": email})
        emit(data["members"], output, columns=["id", "email", "display_name"])
        return

    def add(session: Any) -> list[dict[str, Any]]:
        identity.add_member(session=session, actor=cli_actor(), slug=slug, email=email)
        team = identity.get_team(session=session, slug=slug)
        return [
            _dump(UserBrief.model_validate(m.user))
            for m in identity.list_members(session=session, team_id=team.id)
        ]

    emit(_run_local(add), output, columns=["id", "email", "display_name"])


@team_app.command("list")
def team_list(ctx: typer.Context, output: OutputOpt = Output.TABLE) -> None:
    """List teams (first 500)."""
    if client := remote(ctx):
        rows = client.call("GET", "/teams", params={"limit": 500})["items"]
    else:
        rows = _run_local(
            lambda s: [
                _dump(TeamRead.model_validate(t))
                for t in identity.list_teams(session=s, after_id=None, limit=500)
            ]
        )
    if output == Output.TABLE:  # the lead's address, and say so when a team has none
        rows = [{**r, "lead": r["lead"]["email"] if r.get("lead") else "no lead"} for r in rows]
    emit(rows, output, columns=["id", "slug", "name", "type", "lead"])


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    user: Annotated[str, typer.Option(help="Email of the token's user.")],
    name: Annotated[str, typer.Option(help="What the token is for, e.g. ci-pipeline.")],
    expires_in_days: Annotated[
        int | None, typer.Option(min=1, max=3650, help="Expire after this many days.")
    ] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Create an API token and print it once."""
    expires_at = (
        dt.datetime.now(dt.UTC) + dt.timedelta(days=expires_in_days) if expires_in_days else None
    )
    if client := remote(ctx):
        users = client.call("GET", "/users", params={"q": user, "limit": 500})["items"]
        match = [u for u in users if u["email"] == user.lower()]
        if not match:
            fail(f"no user with email {user}")
        body: dict[str, Any] = {"name": name, "user_id": match[0]["id"]}
        if expires_at:
            body["expires_at"] = expires_at.isoformat()
        emit(client.call("POST", "/tokens", json=body), output)
        return

    def create(session: Any) -> dict[str, Any]:
        target = identity.require_user_by_email(session=session, email=user, field="--user")
        token, plaintext = identity.create_token(
            session=session, actor=cli_actor(), user_id=target.id, name=name, expires_at=expires_at
        )
        return {**_dump(TokenRead.model_validate(token)), "user": target.email, "token": plaintext}

    emit(_run_local(create), output)


@token_app.command("revoke")
def token_revoke(
    ctx: typer.Context,
    token_id: Annotated[
        int, typer.Argument(help="The token's id (see the profile page or GET /api/v1/tokens).")
    ],
    output: OutputOpt = Output.TABLE,
) -> None:
    """Revoke an API token; it stops working at once."""
    if client := remote(ctx):
        emit(client.call("DELETE", f"/tokens/{token_id}"), output)
        return
    token = _run_local(
        lambda s: identity.revoke_token(session=s, actor=cli_actor(), token_id=token_id)
    )
    emit(_dump(TokenRead.model_validate(token)), output)


@audit_app.command("verify")
def audit_verify(ctx: typer.Context, output: OutputOpt = Output.TABLE) -> None:
    """Check the audit hash chain; exit 1 and name the first broken entry if it was tampered with."""
    if client := remote(ctx):
        data = client.call("GET", "/audit/verify")
    else:
        result = _run_local(lambda s: audit.verify(session=s))
        data = {
            "ok": result.ok,
            "checked": result.checked,
            "head_hash": result.head_hash,
            "broken_id": result.broken_id,
            "reason": result.reason,
            "bad": result.bad,
        }
    emit(data, output)
    if not data["ok"]:
        raise typer.Exit(1)


@jobs_app.command("list")
def jobs_list(
    ctx: typer.Context,
    dead: Annotated[bool, typer.Option("--dead", help="Only jobs that ran out of tries.")] = False,
    status: Annotated[
        str | None, typer.Option(help="queued, running, done, dead or cancelled.")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Only this job kind.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    output: OutputOpt = Output.TABLE,
) -> None:
    """List jobs, newest first."""
    status = "dead" if dead else status
    columns = ["id", "kind", "status", "attempts", "due_at", "last_error"]
    if client := remote(ctx):
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        if kind:
            params["kind"] = kind
        emit(client.call("GET", "/jobs", params=params)["items"], output, columns=columns)
        return
    rows = _run_local(
        lambda s: [
            _dump(JobRead.model_validate(j))
            for j in jobs.list_jobs(session=s, status=status, kind=kind, limit=limit)
        ]
    )
    emit(rows, output, columns=columns)
