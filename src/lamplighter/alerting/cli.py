"""``lamplighter alert list|show|ack|resolve|silence`` and ``lamplighter integration
list|create|rotate-key``.

Every command works on the local database (as the operator, audited as the CLI) or on a
remote server with ``--url`` and ``LAMPLIGHTER_TOKEN``, through the REST API with the token's
rights. An integration's key is printed once, when created or rotated.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.orm import Session

from lamplighter.core.clikit import Output, OutputOpt, cli_actor, emit, fail, remote, run_local

T = TypeVar("T")
alert_app = typer.Typer(help="Alerts: list, acknowledge, resolve, silence.", no_args_is_help=True)
integration_app = typer.Typer(
    help="Alert integrations: create, rotate the key.", no_args_is_help=True
)

GROUP_COLUMNS = [
    "id",
    "status",
    "severity",
    "team",
    "entity",
    "summary",
    "alert_count",
    "created_at",
]
INTEGRATION_COLUMNS = ["id", "name", "kind", "team", "entity", "key_hint", "ingest_url"]
GroupArg = Annotated[int, typer.Argument(min=1, help="The alert group's id (alert list shows it).")]


def _local(func: Callable[[Session], T], *, commit: bool = True) -> T:
    return run_local(func, commit=commit, plugins=False)


def _settings() -> Any:
    from lamplighter.core.settings import get_settings

    return get_settings()


@alert_app.command("list")
def list_groups(
    ctx: typer.Context,
    status: Annotated[
        str, typer.Option(help="open (the default), triggered, acknowledged, resolved or all.")
    ] = "open",
    team: Annotated[str | None, typer.Option(help="Owning team's slug.")] = None,
    entity: Annotated[str | None, typer.Option(help="Catalog reference.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Alert groups, newest first."""
    if status not in ("open", "triggered", "acknowledged", "resolved", "all"):
        fail("--status is one of open, triggered, acknowledged, resolved, all")
    chosen = None if status == "all" else status
    if client := remote(ctx):
        params = {"status": chosen, "team": team, "entity": entity, "limit": limit}
        rows = client.call(
            "GET", "/alerting/groups", params={k: v for k, v in params.items() if v is not None}
        )["items"]
    else:

        def fetch(session: Session) -> list[dict[str, Any]]:
            from lamplighter.alerting import groups
            from lamplighter.catalog import service as catalog
            from lamplighter.core import identity

            team_id = identity.get_team(session=session, slug=team).id if team else None
            entity_id = (
                catalog.get_by_ref(session=session, ref=entity, field="--entity").id
                if entity
                else None
            )
            found = groups.list_(
                session, status=chosen, team_id=team_id, entity_id=entity_id, limit=limit
            )
            return [groups.read(session, g).model_dump(mode="json") for g in found]

        rows = _local(fetch, commit=False)
    emit(rows, output, columns=GROUP_COLUMNS)


@alert_app.command("show")
def show(ctx: typer.Context, group_id: GroupArg, output: OutputOpt = Output.TABLE) -> None:
    """One alert group with its alerts and timeline."""
    if client := remote(ctx):
        data = client.call("GET", f"/alerting/groups/{group_id}")
    else:

        def fetch(session: Session) -> dict[str, Any]:
            from lamplighter.alerting import groups

            return groups.detail(session, groups.get(session, group_id)).model_dump(mode="json")

        data = _local(fetch, commit=False)
    if output == Output.JSON:
        emit(data, output)
        return
    emit({k: v for k, v in data.items() if k not in ("alerts", "timeline")}, output)
    emit(
        data["alerts"],
        output,
        columns=["id", "status", "severity", "summary", "dedup_key"],
        title="alerts",
    )
    emit(
        data["timeline"],
        output,
        columns=["at", "what", "actor_user_id", "detail"],
        title="timeline",
    )


def _act(ctx: typer.Context, group_id: int, action: str, output: Output) -> None:
    if client := remote(ctx):
        data = client.call("POST", f"/alerting/groups/{group_id}/{action}")
    else:

        def run(session: Session) -> dict[str, Any]:
            from lamplighter.alerting import groups

            do = groups.acknowledge if action == "acknowledge" else groups.resolve
            group = do(session=session, actor=cli_actor(), group_id=group_id, via="cli")
            return groups.read(session, group).model_dump(mode="json")

        data = _local(run)
    emit(data, output, columns=GROUP_COLUMNS)


@alert_app.command("ack")
def ack(ctx: typer.Context, group_id: GroupArg, output: OutputOpt = Output.TABLE) -> None:
    """Acknowledge an alert group: its escalation stops."""
    _act(ctx, group_id, "acknowledge", output)


@alert_app.command("resolve")
def resolve(ctx: typer.Context, group_id: GroupArg, output: OutputOpt = Output.TABLE) -> None:
    """Resolve an alert group and its alerts."""
    _act(ctx, group_id, "resolve", output)


@alert_app.command("silence")
def silence(
    ctx: typer.Context,
    matchers: Annotated[
        list[str], typer.Argument(help='Label matchers: alertname=HighLatency instance=~"web-.*"')
    ],
    duration: Annotated[str, typer.Option("--for", help="How long: 30m, 2h, 1d.")] = "2h",
    reason: Annotated[str, typer.Option(help="Why (shown to whoever wonders).")] = "",
    team: Annotated[str | None, typer.Option(help="The team whose alerts it silences.")] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Silence matching alerts for a while: they are kept and page nobody."""
    length = _duration(duration)
    if len(reason.strip()) < 3:
        fail("--reason is required: say why the alerts are silenced")
    ends_at = dt.datetime.now(dt.UTC) + length
    body = {"team": team, "matchers": matchers, "ends_at": ends_at.isoformat(), "reason": reason}
    if client := remote(ctx):
        data = client.call("POST", "/alerting/silences", json=body)
    else:

        def run(session: Session) -> dict[str, Any]:
            from lamplighter.alerting import silences
            from lamplighter.alerting.schemas import SilenceIn

            if team is None:
                fail("--team is required on the local database")
            created = silences.create(
                session=session, actor=cli_actor(), data=SilenceIn.model_validate(body)
            )
            return silences.read(session, created).model_dump(mode="json")

        data = _local(run)
    emit(data, output)


def _duration(text: str) -> dt.timedelta:
    units = {"m": 60, "h": 3600, "d": 86400}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit() or int(number) < 1:
        fail(f"--for {text!r}: give minutes, hours or days such as 30m, 2h, 1d")
    return dt.timedelta(seconds=int(number) * units[unit])


# -- integrations -----------------------------------------------------------------------------
@integration_app.command("list")
def list_integrations(
    ctx: typer.Context,
    team: Annotated[str | None, typer.Option(help="Owning team's slug.")] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Integrations (their keys are never shown again: only the last four characters)."""
    if client := remote(ctx):
        rows = client.call("GET", "/alerting/integrations", params={"team": team} if team else {})[
            "items"
        ]
    else:

        def fetch(session: Session) -> list[dict[str, Any]]:
            from lamplighter.alerting import integrations
            from lamplighter.core import identity

            team_id = identity.get_team(session=session, slug=team).id if team else None
            settings = _settings()
            return [
                integrations.read(session, row, settings).model_dump(mode="json")
                for row in integrations.list_(session, team_id=team_id, limit=500)
            ]

        rows = _local(fetch, commit=False)
    emit(rows, output, columns=INTEGRATION_COLUMNS)


@integration_app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name for the sender, e.g. 'prod alertmanager'.")],
    kind: Annotated[
        str, typer.Option(help="alertmanager, pagerduty, generic or heartbeat.")
    ] = "alertmanager",
    entity: Annotated[str | None, typer.Option(help="The catalog entity it is about.")] = None,
    team: Annotated[str | None, typer.Option(help="The owning team (without --entity).")] = None,
    heartbeat_interval: Annotated[
        int | None, typer.Option(help="Seconds between a heartbeat's pings.")
    ] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Create an integration; its key and ingest URL are printed this once."""
    body: dict[str, Any] = {"name": name, "kind": kind, "entity": entity, "team": team}
    if heartbeat_interval is not None:
        body["heartbeat_interval_s"] = heartbeat_interval
    if client := remote(ctx):
        data = client.call("POST", "/alerting/integrations", json=body)
    else:

        def run(session: Session) -> dict[str, Any]:
            import pydantic

            from lamplighter.alerting import integrations
            from lamplighter.alerting.schemas import IntegrationIn

            try:
                data_in = IntegrationIn.model_validate(body)
            except pydantic.ValidationError as exc:
                fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
            settings = _settings()
            integration, key = integrations.create(session=session, actor=cli_actor(), data=data_in)
            shown = integrations.read(session, integration, settings).model_dump(mode="json")
            return {
                **shown,
                "key": key,
                "ingest_url_with_key": integrations.ingest_url(settings, integration.kind, key),
            }

        data = _local(run)
    emit(data, output)


@integration_app.command("rotate-key")
def rotate_key(
    ctx: typer.Context,
    integration_id: Annotated[int, typer.Argument(min=1, help="The integration's id.")],
    output: OutputOpt = Output.TABLE,
) -> None:
    """A new key for an integration, printed this once; the old one stops working."""
    if client := remote(ctx):
        data = client.call("POST", f"/alerting/integrations/{integration_id}/rotate-key")
    else:

        def run(session: Session) -> dict[str, Any]:
            from lamplighter.alerting import integrations

            settings = _settings()
            integration, key = integrations.rotate_key(
                session=session, actor=cli_actor(), integration_id=integration_id
            )
            shown = integrations.read(session, integration, settings).model_dump(mode="json")
            return {
                **shown,
                "key": key,
                "ingest_url_with_key": integrations.ingest_url(settings, integration.kind, key),
            }

        data = _local(run)
    emit(data, output)
