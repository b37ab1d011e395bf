"""`lamplighter catalog …`: import, export and the questions the catalog answers.

Every command works on the local database, or on a remote server with ``--url`` and
``LAMPLIGHTER_TOKEN`` (through the REST API, with the token's rights).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
import yaml
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.orm import Session

from lamplighter.catalog import backstage, search, service
from lamplighter.catalog.backstage_sources import FileSystemSource, SourceError, read_all
from lamplighter.catalog.backstage_yaml import LOADER
from lamplighter.catalog.refs import Ref, parse_ref
from lamplighter.catalog.schemas import ImportReport
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
    remote,
    run_local,
)
from lamplighter.core.errors import LamplighterError
from lamplighter.core.manifest import ENTITY_FACTS
from lamplighter.core.settings import get_settings

catalog_app = typer.Typer(help="The service catalog.", no_args_is_help=True)
T = TypeVar("T")
MAX_REMOTE_FILES = 1000  # what POST /catalog/import accepts at once
BRIEF_COLUMNS = ["ref", "title", "type", "lifecycle", "tier"]
RefArg = Annotated[
    str,
    typer.Argument(
        help="kind:[namespace/]name, or a bare [namespace/]name when one entity has it "
        "(payments-db); an ambiguous or unknown name lists the closest."
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(catalog_app, name="catalog")


def _local(func: Callable[[Session], T], *, commit: bool = True) -> T:
    """One use case against the local database; catalog commands run no jobs or actions."""
    return run_local(func, commit=commit, plugins=False)


def _api() -> Any:
    """The REST module, whose presenters the local commands share (imported late: FastAPI is
    a heavy import, and `catalog import` should start quickly)."""
    from lamplighter.catalog import api

    return api


def _ref(ctx: typer.Context, text: str) -> Ref:
    """The entity REF names, as the pages and the API read it: an explicit ``kind:`` reference
    as written; a bare name resolved to the one entity of that name, whatever its kind (or a
    clean failure naming the closest ones)."""
    if ":" in text:
        try:
            return parse_ref(text, default_kind=None, default_namespace="default", field="REF")
        except LamplighterError as exc:
            fail(exc.detail)
    if client := remote(ctx):
        found = client.call("GET", "/catalog/resolve", params={"ref": text})
        return Ref(kind=found["kind"], namespace=found["namespace"], name=found["name"])

    def look_up(session: Session) -> Ref:
        entity = service.get_by_ref(session=session, ref=text, field="REF")
        return Ref(kind=entity.kind, namespace=entity.namespace, name=entity.name)

    return _local(look_up, commit=False)


def _path(ref: Ref, suffix: str = "") -> str:
    return f"/catalog/entities/{ref.kind}/{ref.namespace}/{ref.name}{suffix}"


# -- import and export ------------------------------------------------------------------------------
@contextmanager
def _progress_bar(show: bool) -> Iterator[Callable[[str, int, int], None] | None]:
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
        tasks = {
            "parse": bar.add_task("files parsed", total=None),
            "write": bar.add_task("entities written", total=None),
        }

        def update(phase: str, done: int, total: int) -> None:
            bar.update(tasks[phase], completed=done, total=total)

        yield update


def _show_report(report: dict[str, Any], output: Output, *, dry_run: bool) -> None:
    if output == Output.JSON:
        emit(report, output)
    else:
        summary = {
            "created": len(report["created"]),
            "updated": len(report["updated"]),
            "unchanged": report["unchanged"],
            "removed": len(report["removed"]),
            "pruned": report["pruned"],
            "kept as imported (other kinds)": report.get("kept", 0),
            "teams created": len(report["teams_created"]),
            "teams updated": len(report.get("teams_updated", [])),
            "users created": len(report["users_created"]),
            "skipped (errors)": len(report["errors"]),
            "warnings": len(report.get("warnings", [])),
        }
        emit(summary, output, title="Catalog import (dry run)" if dry_run else "Catalog import")
        if report["removed"] and not report["pruned"]:
            console.print(
                f"[yellow]{len(report['removed'])} entities are gone from their files and were "
                "kept; --prune removes them:[/] " + ", ".join(report["removed"][:10])
            )
        for label, items in (
            ("[yellow]warning:[/] ", report.get("warnings", [])),
            ("[red]error:[/] ", report["errors"]),
        ):
            for item in items:  # one line each: long paths stay whole and greppable
                where = "" if item["document"] is None else f" document {item['document']}"
                line = f"{item['file']}{where} {item['field']}: {item['reason']}"
                console.print(label + escape(line), soft_wrap=True)
    if report["errors"]:  # something was skipped: the summary says what, the exit code that
        raise typer.Exit(1)


def _files_for_remote(path: Path) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The files an import of ``path`` reads, named ``<directory>/<relative path>``; files that
    cannot travel as JSON text (over the size limit, not UTF-8) are reported here instead."""
    settings = get_settings()
    try:
        source = FileSystemSource(path)
    except SourceError as exc:
        fail(str(exc))
    parsed = read_all(
        source, max_bytes=settings.catalog_max_file_bytes, name_rules=None, on_file=None
    )
    if len(parsed) > MAX_REMOTE_FILES:
        fail(f"{len(parsed)} files: a remote import takes at most {MAX_REMOTE_FILES} at once")
    root = Path(source.root)
    files: dict[str, str] = {}
    refused: list[dict[str, Any]] = []
    for item in parsed:
        name = f"{root.name}/{Path(item.name).relative_to(root).as_posix()}"
        unreadable = [p for p in item.problems if p.field == "file"]
        if unreadable:
            refused.append(
                {"file": name, "document": None, "field": "file", "reason": unreadable[0].reason}
            )
            continue
        files[name] = Path(item.name).read_text(encoding="utf-8")
    return files, refused


@catalog_app.command("import")
def import_(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A catalog-info.yaml file or a directory.")],
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete entities that are gone from their file.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would change; change nothing.")
    ] = False,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Skip a whole file when any document in it has an error."),
    ] = False,
    fetch: Annotated[
        bool,
        typer.Option(
            "--fetch",
            help="Read URL targets and $text/$json/$yaml URLs under "
            "LAMPLIGHTER_CATALOG_FETCH_ALLOWLIST (else they are kept as references).",
        ),
    ] = False,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Import Backstage catalog-info.yaml files. An invalid document is reported and skipped
    (with the documents that need it); the rest imports. Exit code 0 when everything imported,
    1 when something was skipped, 2 on a usage error."""
    if not path.exists():
        fail(f"{path} does not exist", code=2)
    if client := remote(ctx):
        files, refused = _files_for_remote(path)
        body = {
            "files": files,
            "prune": prune,
            "dry_run": dry_run,
            "strict": strict,
            "fetch": fetch,
        }
        report = (
            client.call("POST", "/catalog/import", json=body)
            if files
            else ImportReport(
                created=[],
                updated=[],
                unchanged=0,
                removed=[],
                pruned=False,
                teams_created=[],
                users_created=[],
                errors=[],
            ).model_dump(mode="json")
        )
        report["errors"] = refused + report["errors"]
        _show_report(report, output, dry_run=dry_run)
        return
    settings = get_settings()

    def run(session: Session) -> ImportReport:
        with _progress_bar(output == Output.TABLE) as progress:
            return backstage.import_path(
                session=session,
                actor=cli_actor(),
                path=path,
                settings=settings,
                prune=prune,
                dry_run=dry_run,
                strict=strict,
                fetch=fetch,
                progress=progress,
            )

    report = _local(run, commit=not dry_run)
    _show_report(report.model_dump(mode="json"), output, dry_run=dry_run)


def _remote_yaml(client: Remote, ref: str | None) -> str:
    try:
        response = client.client.get("/catalog/export", params={"ref": ref} if ref else None)
    except httpx.HTTPError as exc:
        fail(f"cannot reach the server: {exc}")
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:200]
        fail(f"HTTP {response.status_code}: {detail}")
    return response.text


@catalog_app.command("export")
def export(
    ctx: typer.Context,
    ref: Annotated[str | None, typer.Option(help="Only this entity.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write to this file, not stdout.")] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Write the catalog (with its Groups and Users), or one entity, as catalog-info.yaml."""
    if client := remote(ctx):
        text = _remote_yaml(client, ref)
    else:
        text = _local(lambda s: backstage.export_yaml(session=s, ref=ref), commit=False)
    documents = sum(1 for line in text.splitlines() if line == "---")
    if out is not None:
        out.write_text(text, encoding="utf-8")
        emit({"file": str(out), "documents": documents, "bytes": len(text.encode())}, output)
    elif output == Output.JSON:
        emit(list(yaml.load_all(text, Loader=LOADER)), output)
    else:
        typer.echo(text, nl=False)


# -- questions ----------------------------------------------------------------------------------------
def _flat_entity(data: dict[str, Any]) -> dict[str, Any]:
    owner = data.get("owner") or {}
    person = data.get("accountable") or {}
    flat = {
        "ref": data["ref"],
        "title": data["title"],
        "type": data["type"],
        "owner": owner.get("slug"),
        "accountable": person.get("email"),
        "lifecycle": data["lifecycle"],
        "tier": data["tier"],
        "tags": ", ".join(data["tags"]),
        "description": data["description"],
        "provenance": data["provenance"],
        "location": data["location"],
    }
    for name, items in data["relations"].items():
        if items:
            flat[name] = ", ".join(item["ref"] for item in items)
    return flat


@catalog_app.command("get")
def get(ctx: typer.Context, ref: RefArg, output: OutputOpt = Output.TABLE) -> None:
    """One entity with its owner, accountable person and direct relations both ways."""
    parsed = _ref(ctx, ref)
    if client := remote(ctx):
        data = client.call("GET", _path(parsed))
    else:
        data = _local(
            lambda s: (
                _api()
                .read(s, service.get_by_ref(session=s, ref=str(parsed)))
                .model_dump(mode="json")
            ),
            commit=False,
        )
    emit(data if output == Output.JSON else _flat_entity(data), output)


@catalog_app.command("list")
def list_(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Option(help="service, api, resource, system, …")] = None,
    owner: Annotated[str | None, typer.Option(help="Owning team's slug.")] = None,
    lifecycle: Annotated[str | None, typer.Option(help="experimental, production, …")] = None,
    tier: Annotated[int | None, typer.Option(min=1, max=4)] = None,
    tag: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Entities, filtered by kind, owning team, lifecycle, tier and tag."""
    params: dict[str, Any] = {
        "kind": kind,
        "owner": owner,
        "lifecycle": lifecycle,
        "tier": tier,
        "tag": tag,
        "limit": limit,
    }
    if client := remote(ctx):
        query = {k: v for k, v in params.items() if v is not None}
        rows = client.call("GET", "/catalog/entities", params=query)["items"]
    else:

        def fetch(session: Session) -> list[dict[str, Any]]:
            team_id = identity.get_team(session=session, slug=owner).id if owner else None
            filters = service.ListFilters(
                kind=kind, owner_team_id=team_id, lifecycle=lifecycle, tier=tier, tag=tag
            )
            found = service.list_(session=session, filters=filters, after_id=None, limit=limit)
            return [_api().brief(e).model_dump(mode="json") for e in found]

        rows = _local(fetch, commit=False)
    emit(rows, output, columns=BRIEF_COLUMNS)


@catalog_app.command("search")
def search_(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="Words to find, as prefixes: 'pay api'.")],
    kind: Annotated[str | None, typer.Option(help="Only this kind.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Full-text search over names, titles, descriptions and tags, best match first."""
    if client := remote(ctx):
        params: dict[str, Any] = {"q": text, "limit": limit} | ({"kind": kind} if kind else {})
        rows = client.call("GET", "/catalog/search", params=params)["items"]
    else:
        rows = _local(
            lambda s: [
                _api().brief(e).model_dump(mode="json")
                for e in search.search(
                    session=s, text=text, filters=service.ListFilters(kind=kind), limit=limit
                )
            ],
            commit=False,
        )
    emit(rows, output, columns=BRIEF_COLUMNS)


@catalog_app.command("who-owns")
def who_owns(ctx: typer.Context, ref: RefArg, output: OutputOpt = Output.TABLE) -> None:
    """The owning team, the accountable person and the team lead, and what is wrong with them."""
    parsed = _ref(ctx, ref)
    if client := remote(ctx):
        data = client.call("GET", _path(parsed, "/owner"))
    else:

        def owner_of(session: Session) -> dict[str, Any]:
            found = _api().who_owns(
                parsed.kind, parsed.namespace, parsed.name, session, cli_actor()
            )
            entity = service.get_by_ref(session=session, ref=found.ref)
            # What the domains above the catalog add (who is on call now), each its own.
            facts = [fact for add in ENTITY_FACTS for fact in add(session, entity)]
            return {
                **found.model_dump(mode="json"),
                "facts": [{"label": label, "text": text} for label, text in facts],
            }

        # Every domain loaded (not only the tables): their entity facts are registered then.
        data = run_local(owner_of, commit=False, plugins=True)
    if output == Output.JSON:
        emit(data, output)
        return

    def person(item: dict[str, Any] | None) -> str:
        return f"{item['display_name']} <{item['email']}>" if item else ""

    owner = data.get("owner")
    emit(
        {
            "ref": data["ref"],
            "owner": f"{owner['slug']} ({owner['name']})" if owner else "",
            "accountable": person(data.get("accountable")),
            "team lead": person(data.get("team_lead")),
            **{fact["label"]: fact["text"] for fact in data.get("facts", [])},
            "problems": "; ".join(data["problems"]) or "none",
        },
        output,
    )


@catalog_app.command("deps")
def deps(
    ctx: typer.Context,
    ref: RefArg,
    reverse: Annotated[
        bool, typer.Option("--reverse", help="What depends on it (the blast radius).")
    ] = False,
    depth: Annotated[int, typer.Option(min=1, max=10, help="Levels to follow.")] = 3,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Transitive dependencies (or dependents with --reverse), with any cycles found."""
    parsed = _ref(ctx, ref)
    if client := remote(ctx):
        params = {"reverse": str(reverse).lower(), "depth": depth}
        data = client.call("GET", _path(parsed, "/deps"), params=params)
    else:
        data = _local(
            lambda s: (
                _api()
                .dependencies(
                    parsed.kind,
                    parsed.namespace,
                    parsed.name,
                    s,
                    cli_actor(),
                    reverse=reverse,
                    depth=depth,
                )
                .model_dump(mode="json")
            ),
            commit=False,
        )
    if output == Output.JSON:
        emit(data, output)
        return
    title = f"{data['direction']} of {data['root']} (depth {data['depth']})"
    emit(data["nodes"], output, columns=["depth", "ref", "kind", "via"], title=title)
    for cycle in data["cycles"]:
        console.print("[yellow]cycle:[/] " + " → ".join(cycle))
    if data["truncated"]:
        console.print("[yellow]truncated:[/] the walk stopped at its node limit")


OWNED_COLUMNS = ["ref", "title", "owner", "type", "lifecycle", "tier"]


def _owned_page(session: Session, slug: str, *, subtree: bool, limit: int) -> dict[str, Any]:
    """The first page of what a team owns, as the REST route presents it."""
    from lamplighter.core.deps import PageParams  # with FastAPI, late, as in _api()

    page = _api().team_entities(
        slug, session, cli_actor(), PageParams(limit=limit), subtree=subtree
    )
    return dict(page.model_dump(mode="json"))


@catalog_app.command("owned-by")
def owned_by(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="The team's slug, e.g. payments.")],
    direct: Annotated[
        bool,
        typer.Option("--direct", help="Only what the team owns itself, not the teams within it."),
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
    output: OutputOpt = Output.TABLE,
) -> None:
    """What a team owns and, unless --direct, what every team within it owns; each entity with
    the team that owns it."""
    if client := remote(ctx):
        params = {"subtree": str(not direct).lower(), "limit": limit}
        page = client.call("GET", f"/catalog/teams/{slug.lower()}/entities", params=params)
    else:
        page = _local(lambda s: _owned_page(s, slug, subtree=not direct, limit=limit), commit=False)
    rows = page["items"]
    if output == Output.TABLE:
        rows = [{**row, "owner": (row.get("owner") or {}).get("slug", "")} for row in rows]
    emit(rows, output, columns=OWNED_COLUMNS)
    if page["next_cursor"]:  # on stderr, so that JSON on stdout stays whole
        err_console.print(
            f"[yellow]more:[/] only the first {limit} are shown; --limit takes up to 500, "
            f"and GET /api/v1/catalog/teams/{slug.lower()}/entities pages through all"
        )


HYGIENE_COLUMNS = ["ref", "owner", "problem"]


def _local_hygiene(session: Session, limit: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two pages the API answers, from the local database."""
    from lamplighter.core.deps import PageParams

    api = _api()
    entities = api.ownership_hygiene(session, cli_actor(), PageParams(limit=limit))
    people = api.people_hygiene(session, cli_actor(), PageParams(limit=limit))
    return entities.model_dump(mode="json"), people.model_dump(mode="json")


@catalog_app.command("hygiene")
def hygiene(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many of each.")] = 100,
    output: OutputOpt = Output.TABLE,
) -> None:
    """What keeps ownership from being whole, and how to fix each: entities without a valid
    owner or accountable person, or with unresolved relations; people without an e-mail."""
    if client := remote(ctx):
        entities = client.call("GET", "/catalog/hygiene", params={"limit": limit})
        people = client.call("GET", "/catalog/hygiene/people", params={"limit": limit})
    else:
        entities, people = _local(lambda s: _local_hygiene(s, limit), commit=False)
    data = {
        "entities": [{k: item.get(k) for k in HYGIENE_COLUMNS} for item in entities["items"]],
        "people": [
            {k: item.get(k) for k in ("id", "ref", "display_name", "problem")}
            for item in people["items"]
        ],
        "more": bool(entities["next_cursor"] or people["next_cursor"]),
    }
    if output == Output.JSON:
        emit(data, output)
        return
    emit(data["entities"], output, columns=HYGIENE_COLUMNS, title="Entities")
    if data["people"]:
        emit(
            data["people"],
            output,
            columns=["id", "ref", "display_name", "problem"],
            title="People (set an address: lamplighter user set-email ID EMAIL)",
        )
    if data["more"]:
        err_console.print(f"[yellow]more:[/] only the first {limit} of each are shown")
