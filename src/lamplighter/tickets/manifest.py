"""The ticket journal as a domain: what it brings to the app, the CLI and the worker."""

from lamplighter.core.manifest import Manifest, NavEntry

manifest = Manifest(
    name="tickets",
    api=("lamplighter.tickets.api:router", "lamplighter.tickets.analytics_api:router"),
    pages=(
        "lamplighter.tickets.pages:router",
        "lamplighter.tickets.analytics_pages:router",
        "lamplighter.tickets.type_pages:router",
    ),
    nav=(
        NavEntry(
            "/tickets",
            "Tickets",
            "The journal of requests that still need a human, and the toil worth automating next.",
            order=20,
        ),
    ),
    cli={"ticket": "lamplighter.tickets.cli:ticket_app"},
    models=("lamplighter.tickets.models",),
    event_types=("lamplighter.tickets.event_types",),
    home_panels=("lamplighter.tickets.home:assigned_panel",),
    demo="lamplighter.tickets.demo:load",
)
