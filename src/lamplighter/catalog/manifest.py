"""The catalog as a domain: what it brings to the app, the CLI and the worker."""

from lamplighter.core.manifest import Manifest, NavEntry

manifest = Manifest(
    name="catalog",
    api=("lamplighter.catalog.api:router", "lamplighter.catalog.exchange_api:router"),
    pages=("lamplighter.catalog.pages:router",),
    nav=(
        NavEntry(
            "/catalog",
            "Catalog",
            "Every service, API and resource, with its owning team, accountable person and dependencies.",
            order=10,
        ),
    ),
    cli={"catalog": "lamplighter.catalog.cli:catalog_app"},
    models=("lamplighter.catalog.models",),
    event_types=("lamplighter.catalog.event_types",),
    team_panels=("lamplighter.catalog.pages:owned_panel",),
    home_panels=("lamplighter.catalog.home:hygiene_panel",),
    demo="lamplighter.catalog.demo:load",
)
