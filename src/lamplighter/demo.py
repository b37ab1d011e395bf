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
    """Load the demo organisation once (teams, people, catalog, tickets) and print what was
    loaded and how to sign in."""
    db = local_db()
    try:
        loaded = load(db)
    finally:
        db.dispose()
    if output == Output.JSON:
        emit({**loaded, **core_demo.CREDENTIALS}, output)
        return
    # No address: this command cannot know where (or whether) a server runs; `lamplighter
    # serve` prints its own address when it starts.
    emit(
        {
            **{part: "loaded" if done else "already there" for part, done in loaded.items()},
            "sign in as": core_demo.CREDENTIALS["admin_email"],
            "password": core_demo.CREDENTIALS["password"],
            "other people": "priya@example.com (member), sam@example.com (SRE), same password",
        },
        output,
        title="Demo organisation",
    )
