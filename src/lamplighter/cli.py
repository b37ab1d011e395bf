"""The `lamplighter` command: one Typer sub-app per domain, composed here."""

from __future__ import annotations

from typing import Annotated

import typer

from lamplighter.catalog import cli as catalog_cli
from lamplighter.core import cli as core_cli
from lamplighter.core.clikit import CliState
from lamplighter.demo import demo_app
from lamplighter.selfservice import cli as selfservice_cli
from lamplighter.tickets import cli as tickets_cli

app = typer.Typer(
    name="lamplighter",
    help="Lamplighter: self-serve reliability platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main_callback(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            envvar="LAMPLIGHTER_URL",
            help="Talk to this remote server instead of the local database.",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="LAMPLIGHTER_TOKEN", help="API token for --url.", show_default=False),
    ] = None,
) -> None:
    ctx.obj = CliState(url=url, token=token)


core_cli.register(app)
catalog_cli.register(app)
tickets_cli.register(app)
selfservice_cli.register(app)
app.add_typer(demo_app, name="demo")


def main() -> None:
    app()
