"""The demo organisation `make run` loads once: each domain's demo data, in the domains' order."""

from __future__ import annotations

import typer

from lamplighter import domains
from lamplighter.core import demo as core_demo
from lamplighter.core.clikit import Output, OutputOpt, emit, local_db
from lamplighter.core.db import Database
from lamplighter.core.manifest import resolve
from lamplighter.core.settings import get_settings


def load(db: Database) -> dict[str, bool]:
    """Load each domain's part of the demo that is not there yet (people and teams first)."""
    return {
        ("organisation" if manifest.name == "core" else manifest.name): bool(
            resolve(manifest.demo)(db)
        )
        for manifest in domains.manifests(get_settings())
        if manifest.demo is not None
    }


demo_app = typer.Typer(help="Demo data.", no_args_is_help=True)


@demo_app.command("load")
def demo_load(output: OutputOpt = Output.TABLE) -> None:
    """Load the demo organisation once (teams, people, catalog, tickets) and print how to log in."""
    db = local_db()
    try:
        loaded = load(db)
    finally:
        db.dispose()
    emit(
        {**loaded, **core_demo.CREDENTIALS, "url": get_settings().base_url},
        output,
        title="Demo organisation",
    )
