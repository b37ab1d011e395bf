"""SLOs as a domain: what it brings to the app, the CLI and the worker."""

from lamplighter.core.manifest import Manifest

manifest = Manifest(
    name="slo",
    models=("lamplighter.slo.models",),
    event_types=("lamplighter.slo.event_types",),
    registers=("lamplighter.slo.jobs",),
)
