"""`lamplighter slo …`: apply Sloth and OpenSLO files, read SLOs and their status, push built-in
events, export rules and OpenSLO.

Every command works on the local database, or on a remote server with ``--url`` and
``LAMPLIGHTER_TOKEN`` (through the REST API, with the token's rights); ``events push`` may
instead send the SLO's ingest key (``--ingest-key``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import orjson
import pydantic
import typer
from rich.markup import escape
from sqlalchemy.orm import Session

from lamplighter.core.clikit import (
    Output,
    OutputOpt,
    cli_actor,
    console,
    emit,
    fail,
    remote,
    run_local,
    state,
)

T = TypeVar("T")
slo_app = typer.Typer(help="SLOs, SLIs and error budgets.", no_args_is_help=True)
events_app = typer.Typer(help="Built-in event counters.", no_args_is_help=True)
rules_app = typer.Typer(help="Prometheus rules for the SLOs.", no_args_is_help=True)
slo_app.add_typer(events_app, name="events")
slo_app.add_typer(rules_app, name="rules")

MAX_REMOTE_FILES = 1000  # what POST /slos/import takes at once
SPEC_SUFFIXES = (".yml", ".yaml")
LIST_COLUMNS = ["id", "entity", "name", "objective", "window", "source", "owner_team"]
STATUS_COLUMNS = [
    "id",
    "entity",
    "name",
    "status",
    "attainment",
    "budget_remaining",
    "exhaustion_at",
    "reason",
]
IdArg = Annotated[int, typer.Argument(min=1, help="The SLO's id (slo list shows it).")]
TeamOpt = Annotated[str | None, typer.Option("--team", help="Owning team's slug.")]
EntityOpt = Annotated[str | None, typer.Option("--entity", help="Catalog reference.")]


def _local(func: Callable[[Session], T], *, commit: bool = True) -> T:
    return run_local(func, commit=commit, plugins=False)


def _api() -> Any:
    from lamplighter.slo import api  # FastAPI is a heavy import: only when a command needs it

    return api


def _filters(session: Session, team: str | None, entity: str | None, **more: Any) -> Any:
    return _api()._filters(session, team, entity, more.get("status"), more.get("source"))


# -- apply --------------------------------------------------------------------------------------


def spec_files(path: Path) -> list[tuple[str, str]]:
    """The files ``slo apply PATH`` reads, with the names kept as their SLOs' origin.

    A directory's files are named ``<directory name>/<path inside it>``; a single file
    ``<its directory's name>/<file name>``, so applying ``slos/`` or ``slos/web.yml`` gives
    web.yml's SLOs the same origin (and ``--prune`` the same scope)."""
    root = path.resolve()
    if root.is_dir():
        found = sorted(
            p
            for p in root.rglob("*")
            if p.is_file()
            and p.suffix in SPEC_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )
        named = [(f"{root.name}/{p.relative_to(root).as_posix()}", p) for p in found]
    else:
        named = [(f"{root.parent.name}/{root.name}".lstrip("/"), root)]
    files = []
    for name, file in named:
        try:
            files.append((name, file.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read {file}: {exc}")
    return files


def _show_report(report: dict[str, Any], output: Output) -> None:
    if output == Output.JSON:
        emit(report, output)
    else:
        rows = [
            {
                "file": item["file"],
                "created": len(item["created"]),
                "updated": len(item["updated"]),
                "unchanged": len(item["unchanged"]),
                "deleted": len(item["deleted"]),
                "problems": len(item["problems"]),
            }
            for item in report["files"]
        ]
        title = "SLO apply (dry run: nothing written)" if report["dry_run"] else "SLO apply"
        emit(rows, output, title=title)
        for item in report["files"]:
            for problem in item["problems"]:
                where = "" if problem["document"] is None else f" document {problem['document']}"
                line = f"{problem['file']}{where} {problem['field']}: {problem['reason']}"
                console.print("[red]error:[/] " + escape(line), soft_wrap=True)
    if report["refused_files"]:
        raise typer.Exit(1)


@slo_app.command("apply")
def apply_(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A Sloth or OpenSLO file, or a directory.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would change; change nothing.")
    ] = False,
    prune: Annotated[
        bool,
        typer.Option("--prune", help="Delete SLOs these files made before and define no more."),
    ] = False,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Apply Sloth prometheus/v1 specs and OpenSLO v1 files. A file with any problem writes
    nothing; the others apply. Exit code 0 when every file applied, 1 when one was refused,
    2 on a usage error."""
    if not path.exists():
        fail(f"{path} does not exist", code=2)
    files = spec_files(path)
    if client := remote(ctx):
        if len(files) > MAX_REMOTE_FILES:
            fail(f"{len(files)} files: a remote apply takes at most {MAX_REMOTE_FILES} at once")
        body = {
            "files": [{"name": name, "content": text} for name, text in files],
            "dry_run": dry_run,
            "prune": prune,
        }
        report = client.call("POST", "/slos/import", json=body) if files else None
    else:
        from lamplighter.slo import apply

        def run(session: Session) -> dict[str, Any]:
            result = apply.apply(
                session=session, actor=cli_actor(), files=files, prune=prune, dry_run=dry_run
            )
            return result.model_dump(mode="json")

        report = _local(run, commit=not dry_run) if files else None
    if report is None:
        fail(f"no .yml or .yaml files in {path}", code=2)
    _show_report(report, output)


# -- reading ------------------------------------------------------------------------------------


@slo_app.command("list")
def list_(
    ctx: typer.Context,
    team: TeamOpt = None,
    entity: EntityOpt = None,
    status: Annotated[
        str | None, typer.Option(help="healthy, warning, burning, exhausted or 'no data'.")
    ] = None,
    source: Annotated[str | None, typer.Option(help="prometheus, events or probe.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
    output: OutputOpt = Output.TABLE,
) -> None:
    """SLOs, the least error budget left first."""
    params = {"team": team, "entity": entity, "status": status, "source": source, "limit": limit}
    if client := remote(ctx):
        query = {k: v for k, v in params.items() if v is not None}
        rows = client.call("GET", "/slos", params=query)["items"]
    else:

        def fetch(session: Session) -> list[dict[str, Any]]:
            from lamplighter.slo import service

            filters = _filters(session, team, entity, status=status, source=source)
            found, _ = service.list_(session=session, filters=filters, limit=limit)
            return [_api().read(session, slo).model_dump(mode="json") for slo in found]

        rows = _local(fetch, commit=False)
    emit(rows, output, columns=LIST_COLUMNS)


@slo_app.command("get")
def get(ctx: typer.Context, slo_id: IdArg, output: OutputOpt = Output.TABLE) -> None:
    """One SLO's definition."""
    if client := remote(ctx):
        data = client.call("GET", f"/slos/{slo_id}")
    else:

        def fetch(session: Session) -> dict[str, Any]:
            from lamplighter.slo import service

            slo = service.get(session=session, slo_id=slo_id)
            return dict(_api().read(session, slo).model_dump(mode="json"))

        data = _local(fetch, commit=False)
    emit(data, output)


def _status_row(data: dict[str, Any]) -> dict[str, Any]:
    return {column: data.get(column) for column in STATUS_COLUMNS}


@slo_app.command("status")
def status_(
    ctx: typer.Context,
    slo_id: Annotated[int | None, typer.Argument(min=1, help="One SLO; else all.")] = None,
    entity: EntityOpt = None,
    team: TeamOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Attainment, remaining budget and status: of one SLO, or of the SLOs of an entity or a
    team (the least budget left first)."""
    client = remote(ctx)
    if slo_id is not None:
        if client:
            data = client.call("GET", f"/slos/{slo_id}/status")
        else:

            def one(session: Session) -> dict[str, Any]:
                from lamplighter.slo import service

                slo = service.get(session=session, slo_id=slo_id)
                return orjson.loads(orjson.dumps(service.status_of(session=session, slo=slo)))  # type: ignore[no-any-return]

            data = _local(one, commit=False)
        if output == Output.JSON:
            emit(data, output)
        else:
            emit({**_status_row(data), "burn_rates": data["burn_rates"]}, output)
        return
    if client:
        query = {k: v for k, v in {"team": team, "entity": entity}.items() if v is not None}
        slos = client.call("GET", "/slos", params={**query, "limit": 500})["items"]
        rows = [client.call("GET", f"/slos/{item['id']}/status") for item in slos]
    else:

        def many(session: Session) -> list[dict[str, Any]]:
            from lamplighter.slo import service

            found, _ = service.list_(
                session=session, filters=_filters(session, team, entity), limit=500
            )
            statuses = [service.status_of(session=session, slo=slo) for slo in found]
            return orjson.loads(orjson.dumps(statuses))  # type: ignore[no-any-return]

        rows = _local(many, commit=False)
    emit(rows if output == Output.JSON else [_status_row(r) for r in rows], output)


# -- built-in events ----------------------------------------------------------------------------


def _points_from_file(path: Path) -> list[dict[str, Any]]:
    """Points from a CSV (``at,good,total`` with a header) or JSON file (a list of points, or
    ``{"points": [...]}``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {exc}", code=2)
    if path.suffix.lower() == ".json":
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            fail(f"{path} is not JSON: {exc}", code=2)
        points = data.get("points") if isinstance(data, dict) else data
        if not isinstance(points, list):
            fail(f'{path}: a list of points, or {{"points": [...]}}', code=2)
        return points
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"good", "total"} <= set(reader.fieldnames):
        fail(f"{path}: a CSV with the header at,good,total", code=2)
    return [{k: v for k, v in row.items() if k in ("at", "good", "total") and v} for row in reader]


def _checked(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from lamplighter.slo.schemas import EventBatchIn

    try:
        batch = EventBatchIn.model_validate({"points": points})
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {str(e['msg']).removeprefix('Value error, ')}"
            for e in exc.errors()[:5]
        )
        fail(f"the points are not right: {problems}", code=2)
    return [p.model_dump(mode="json", exclude_none=True) for p in batch.points]


def _push_with_key(ctx: typer.Context, slo_id: int, key: str, body: dict[str, Any]) -> Any:
    url = state(ctx).url
    assert url is not None
    try:
        response = httpx.post(
            url.rstrip("/") + f"/api/v1/slos/{slo_id}/events",
            json=body,
            headers={"X-Lamplighter-Ingest-Key": key},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        fail(f"cannot reach the server: {exc}")
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:200]
        fail(f"HTTP {response.status_code}: {detail}")
    return response.json()


@events_app.command("push")
def push(
    ctx: typer.Context,
    slo_id: IdArg,
    good: Annotated[int | None, typer.Option(min=0, help="Good events.")] = None,
    total: Annotated[int | None, typer.Option(min=0, help="All events.")] = None,
    at: Annotated[
        str | None, typer.Option(help="When, with its zone (2026-12-06T10:00:00Z); default now.")
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="Many points: CSV (at,good,total) or JSON.")
    ] = None,
    ingest_key: Annotated[
        str | None,
        typer.Option(
            "--ingest-key",
            envvar="LAMPLIGHTER_SLO_INGEST_KEY",
            help="The SLO's ingest key instead of a token (remote).",
        ),
    ] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Add good and total event counts to an SLO on built-in events."""
    if (file is None) == (good is None and total is None):
        fail("give --good and --total, or --file", code=2)
    if file is not None:
        points = _checked(_points_from_file(file))
    else:
        if good is None or total is None:
            fail("give both --good and --total", code=2)
        points = _checked([{"good": good, "total": total, **({"at": at} if at else {})}])
    body = {"points": points}
    if ingest_key and state(ctx).url:
        result = _push_with_key(ctx, slo_id, ingest_key, body)
    elif client := remote(ctx):
        result = client.call("POST", f"/slos/{slo_id}/events", json=body)
    else:

        def run(session: Session) -> dict[str, Any]:
            from lamplighter.slo import service

            slo = service.get(session=session, slo_id=slo_id)
            if ingest_key:
                service.check_ingest_key(session=session, slo_id=slo_id, key=ingest_key)
            parsed = [
                (dt.datetime.fromisoformat(p["at"]) if "at" in p else None, p["good"], p["total"])
                for p in points
            ]
            accepted, buckets = service.ingest(session=session, slo=slo, points=parsed)
            return {"accepted": accepted, "buckets": buckets}

        result = _local(run)
    emit(result, output)


# -- export -------------------------------------------------------------------------------------


def _remote_text(ctx: typer.Context, path: str, params: dict[str, Any] | None = None) -> str:
    client = remote(ctx)
    assert client is not None
    try:
        response = client.client.get(path, params=params)
    except httpx.HTTPError as exc:
        fail(f"cannot reach the server: {exc}")
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:200]
        fail(f"HTTP {response.status_code}: {detail}")
    return response.text


REMOTE_RULES_FILE = "lamplighter-slos.yml"


@rules_app.command("export")
def rules_export(
    ctx: typer.Context,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the rule files into this directory.")
    ] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Prometheus recording and alerting rules for the Prometheus-backed SLOs (Sloth's names
    and labels). Without --out, the rules go to stdout."""
    if remote(ctx):
        # The server answers one file; remotely it is written as lamplighter-slos.yml.
        files = {REMOTE_RULES_FILE: _remote_text(ctx, "/slos/rules")}
    else:
        from lamplighter.slo import rules

        files = _local(lambda s: dict(rules.export_files(s)), commit=False)
    if out is None:
        if output == Output.JSON:
            emit(files, output)
        else:
            typer.echo("".join(files.values()), nl=False)
        return
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in sorted(files.items()):
        target = out / name
        target.write_text(text, encoding="utf-8")
        written.append({"file": str(target), "bytes": len(text.encode())})
    emit(written, output, columns=["file", "bytes"])


@slo_app.command("export")
def export(
    ctx: typer.Context,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write to this file, not stdout.")
    ] = None,
    team: TeamOpt = None,
    entity: EntityOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """SLOs as OpenSLO v1 documents (those on built-in events or probes are listed as skipped
    in a comment: they have no query to write)."""
    params = {k: v for k, v in {"team": team, "entity": entity}.items() if v is not None}
    if remote(ctx):
        text = _remote_text(ctx, "/slos/export", {"format": "openslo", **params})
    else:
        from lamplighter.slo import apply

        def run(session: Session) -> str:
            slos = _api().all_slos(session, _filters(session, team, entity))
            return apply.export_openslo(session, slos)

        text = _local(run, commit=False)
    documents = sum(1 for line in text.splitlines() if line == "---")
    skipped = sum(1 for line in text.splitlines() if line.startswith("# skipped: "))
    if out is not None:
        out.write_text(text, encoding="utf-8")
        summary = {"file": str(out), "documents": documents, "skipped": skipped}
        emit(summary | {"bytes": len(text.encode())}, output)
    elif output == Output.JSON:
        emit({"documents": documents, "skipped": skipped, "yaml": text}, output)
    else:
        typer.echo(text, nl=False)
