"""Self-service as a domain: what it brings to the app, the CLI and the worker."""

from lamplighter.core.manifest import Manifest, NavEntry

manifest = Manifest(
    name="selfservice",
    api=("lamplighter.selfservice.api:router",),
    pages=("lamplighter.selfservice.pages:router",),
    nav=(
        NavEntry(
            "/selfservice",
            "Self-service",
            "Golden-path templates: create repositories, databases, topics and access grants yourself.",
            order=30,
        ),
    ),
    cli={
        "template": "lamplighter.selfservice.cli:template_app",
        "run": "lamplighter.selfservice.cli:run_app",
    },
    models=("lamplighter.selfservice.models", "lamplighter.selfservice.grants"),
    event_types=("lamplighter.selfservice.event_types",),
    # The run job, grant expiry, and the built-in and installed actions.
    registers=("lamplighter.selfservice.runner", "lamplighter.selfservice.actions.builtin"),
    entity_panels=("lamplighter.selfservice.pages:access_panel",),
    home_panels=(
        "lamplighter.selfservice.home:approvals_panel",
        "lamplighter.selfservice.home:my_runs_panel",
    ),
    demo="lamplighter.selfservice.demo:load",
    on_start=("lamplighter.selfservice.golden:sync_on_start",),
)
