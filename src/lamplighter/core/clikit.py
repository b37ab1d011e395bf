"""What every CLI command shares: --output, local-or-remote mode, and printing results."""

from __future__ import annotations

import enum
import getpass
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn, TypeVar

import httpx
import orjson
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lamplighter.core.context import Actor
from lamplighter.core.db import Database
from lamplighter.core.errors import LamplighterError
from lamplighter.core.settings import Settings, get_settings

T = TypeVar("T")
console = Console()
err_console = Console(stderr=True)


class Output(enum.StrEnum):
    TABLE = "table"
    JSON = "json"


OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table or json")]


@dataclass
class CliState:
    url: str | None = None
    token: str | None = None


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, CliState) else CliState()


def cli_actor() -> Actor:
    return Actor.system(f"cli ({getpass.getuser()})")


def local_db(settings: Settings | None = None, *, plugins: bool = True) -> Database:
    """The local database, checked to be current. ``plugins=False`` skips the job handlers
    and actions, for commands that neither run jobs nor actions (a third of a second)."""
    from lamplighter.core import migrate
    from lamplighter.core.plugins import load_plugins

    settings = settings or get_settings()
    if plugins:
        load_plugins(settings)
    else:
        importlib.import_module("lamplighter.models_registry")  # every table, mapped
    db = Database(settings.effective_database_url, pool_size=2)
    try:
        migrate.check_current(db.engine)
    except migrate.DatabaseBehind as exc:
        fail(str(exc))
    return db


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


class Remote:
    """A thin client for a remote Lamplighter (``--url`` and ``LAMPLIGHTER_TOKEN``)."""

    def __init__(self, url: str, token: str | None) -> None:
        if not token:
            fail("talking to a remote server needs LAMPLIGHTER_TOKEN")
        self.client = httpx.Client(
            base_url=url.rstrip("/") + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            fail(f"cannot reach the server: {exc}")
        if response.status_code >= 400:
            try:
                body = response.json()
                detail = body.get("detail") or body.get("title")
                errors = "; ".join(f"{e['field']}: {e['reason']}" for e in body.get("errors", []))
            except ValueError:
                detail, errors = response.text[:200], ""
            fail(f"HTTP {response.status_code}: {detail}" + (f" ({errors})" if errors else ""))
        if response.status_code == 204:
            return None
        return response.json()


def remote(ctx: typer.Context) -> Remote | None:
    cli_state = state(ctx)
    if cli_state.url:
        return Remote(cli_state.url, cli_state.token or os.environ.get("LAMPLIGHTER_TOKEN"))
    return None


def emit(
    data: Any, output: Output, *, columns: list[str] | None = None, title: str | None = None
) -> None:
    """Print a record or a list of records as a Rich table or as JSON.

    A table is as wide as the terminal; a cell too long for it wraps onto more lines (never cut
    with "…"). When the output goes to a pipe or a file, the table is as wide as its content.
    ``--output json`` always carries every value in full.
    """
    if output == Output.JSON:
        typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode())
        return
    rows = data if isinstance(data, list) else [data]
    out = table_console()
    if not rows:
        out.print("[dim]nothing to show[/]")
        return
    columns = columns or list(rows[0].keys())
    if not isinstance(data, list):
        table = Table(show_header=False, title=title)
        table.add_column("field", style="bold", no_wrap=True)
        table.add_column("value", overflow="fold")
        for key in columns:
            table.add_row(Text(key), _cell(data.get(key)))
    else:
        table = Table(title=title)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(_cell(row.get(c)) for c in columns))
    fit_to_content(out, table)
    out.print(table)


def table_console() -> Console:
    """A console for one table, sized when it prints: ``COLUMNS`` if set (read now, not at
    import, so a resized shell or a test's environment counts), else the terminal's width."""
    columns = os.environ.get("COLUMNS", "")
    return Console(width=int(columns) if columns.isdigit() and int(columns) > 0 else None)


def fit_to_content(out: Console, renderable: Any) -> None:
    """Widen a console that writes to a pipe or a file (no terminal, no ``COLUMNS``), whose
    width Rich would take as 80, to the renderable's natural width: nothing is wrapped then."""
    if out.is_terminal or os.environ.get("COLUMNS", "").isdigit():
        return
    natural = out.measure(renderable, options=out.options.update_width(MAX_PIPE_WIDTH)).maximum
    out.width = max(out.width, min(natural, MAX_PIPE_WIDTH))


# A pipe has no width; a table wider than this still folds its longest cells.
MAX_PIPE_WIDTH = 1000


def _cell(value: Any) -> Text:
    # Text, not a string: Rich would read "[…]" in a value as markup and drop it.
    if value is None:
        return Text("")
    if isinstance(value, (dict, list)):
        return Text(orjson.dumps(value, default=str).decode())
    return Text(str(value))


def run_local(func: Callable[[Session], T], *, commit: bool = True, plugins: bool = True) -> T:
    """Run one use case against the local database; a domain error becomes a clean exit 1."""
    db = local_db(plugins=plugins)
    try:
        with db.sessionmaker() as session:
            result = func(session)
            if commit:
                session.commit()
            return result
    except LamplighterError as exc:
        errors = "; ".join(f"{e.field}: {e.reason}" for e in exc.errors)
        fail(exc.detail + (f" ({errors})" if errors and errors not in exc.detail else ""))
    except IntegrityError:  # another writer got there first; nothing was written
        fail("the data changed while this command ran; nothing was changed, run it again")
    finally:
        db.dispose()
