"""What a domain brings to Lamplighter, in one declaration.

Every domain package exports ``manifest: Manifest`` from its ``manifest.py``; the composition
layer (``lamplighter.domains``) reads the list of manifests to build the web app, the CLI, the
navigation, the table registry and the worker. Adding a domain is writing its package and adding
its manifest to ``lamplighter.domains.BUILTIN`` (or naming it in ``LAMPLIGHTER_PLUGINS``).

References to code are ``"module:attribute"`` strings, imported when needed: the CLI starts
without importing any domain's web routes, and ``lamplighter --help`` without its models.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings

from lamplighter.core.events import Subscription


@dataclass(frozen=True)
class NavEntry:
    path: str
    label: str
    summary: str
    order: int  # DESIGN.md's order; lower comes first


@dataclass(frozen=True)
class Manifest:
    name: str
    # APIRouters ("module:router"), mounted under /api/v1; each under its own path prefix.
    api: tuple[str, ...] = ()
    # Page routers (HTML), mounted at the root.
    pages: tuple[str, ...] = ()
    nav: tuple[NavEntry, ...] = ()
    # Command name -> "module:attribute" (a Typer app, or a function that is one command).
    cli: Mapping[str, str] = field(default_factory=dict)
    # Modules that define the domain's tables.
    models: tuple[str, ...] = ()
    # Modules declaring the domain's event types (``events.event_type``).
    event_types: tuple[str, ...] = ()
    # Modules whose import registers job handlers, recurring jobs, actions and panels.
    registers: tuple[str, ...] = ()
    # Reactions to other domains' events: pattern -> job kind (its handler is registered above).
    subscriptions: tuple[Subscription, ...] = ()
    # The domain's own settings (a pydantic-settings class with its own env prefix).
    settings: type[BaseSettings] | None = None
    # "module:function(db)" loading the domain's demo data; returns whether it loaded anything.
    demo: str | None = None
    # "module:function(database, settings)" run when the web app starts (never fatal).
    on_start: tuple[str, ...] = ()
    # A directory of Alembic revisions of the domain's own tables (a branch of their own),
    # for domains outside this repository; the built-in domains share migrations/versions.
    migrations: Path | None = None
    # Sections the domain adds to the catalog's entity page and to the team page:
    # "module:function(request, session, entity_or_team, viewer) -> Markup | None".
    entity_panels: tuple[str, ...] = ()
    team_panels: tuple[str, ...] = ()
    # What needs the signed-in person's attention, on the home page (core/home.py):
    # "module:function(request, session, viewer) -> HomePanel | None".
    home_panels: tuple[str, ...] = ()
    # Facts the domain adds to what ``catalog who-owns`` says about an entity (who is on call):
    # "module:function(session, entity) -> list[tuple[str, str]]", (label, text) pairs.
    entity_facts: tuple[str, ...] = ()


# The entity facts of every loaded domain (``lamplighter.domains.load`` fills it), in the order
# of the manifests: the catalog reads them without importing the domains above it.
EntityFact = Callable[[Any, Any], list[tuple[str, str]]]
ENTITY_FACTS: list[EntityFact] = []


def resolve(reference: str) -> Any:
    """Import ``"module:attribute"``."""
    module, _, attribute = reference.partition(":")
    target: Any = importlib.import_module(module)
    return getattr(target, attribute) if attribute else target


# -- core's own part: people, teams, tokens, audit, events, webhooks, jobs, the inbox ----------
manifest = Manifest(
    name="core",
    api=("lamplighter.core.api:router",),
    pages=(
        "lamplighter.core.oidc:router",
        "lamplighter.core.inbox_pages:router",
        "lamplighter.core.suggest_pages:router",
        "lamplighter.core.pages:router",
    ),
    cli={
        "serve": "lamplighter.core.cli:serve",
        "worker": "lamplighter.core.cli:worker",
        "version": "lamplighter.core.cli:version",
        "db": "lamplighter.core.cli:db_app",
        "user": "lamplighter.core.cli:user_app",
        "team": "lamplighter.core.cli:team_app",
        "token": "lamplighter.core.cli:token_app",
        "audit": "lamplighter.core.cli:audit_app",
        "jobs": "lamplighter.core.cli:jobs_app",
    },
    models=("lamplighter.core.models",),
    event_types=("lamplighter.core.event_types",),
    registers=("lamplighter.core.jobs", "lamplighter.core.webhooks"),
    demo="lamplighter.core.demo:load",
)
