"""`lamplighter catalog …` (placeholder until implemented)."""

from __future__ import annotations

import typer

catalog_app = typer.Typer(help="The service catalog.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(catalog_app, name="catalog")
