"""SLOs as a domain: what it brings to the app, the CLI and the worker."""

from lamplighter.core.manifest import Manifest, NavEntry

manifest = Manifest(
    name="slo",
    api=("lamplighter.slo.api:router",),
    pages=("lamplighter.slo.pages:router",),
    nav=(
        NavEntry(
            "/slos",
            "SLOs",
            "Service level objectives, their error budgets and burn rates, and the release freeze.",
            order=40,
        ),
    ),
    cli={"slo": "lamplighter.slo.cli:slo_app"},
    models=("lamplighter.slo.models",),
    event_types=("lamplighter.slo.event_types",),
    registers=("lamplighter.slo.jobs", "lamplighter.slo.probes", "lamplighter.slo.demo"),
    entity_panels=("lamplighter.slo.panels:entity_panel",),
    team_panels=("lamplighter.slo.panels:team_panel",),
    home_panels=("lamplighter.slo.panels:home_panel",),
    demo="lamplighter.slo.demo:load",
)
