"""Registers the built-in actions (importing their modules) and the actions of installed
packages (the ``lamplighter.actions`` entry points)."""

from lamplighter.selfservice.actions import (  # noqa: F401 - imported for their registrations
    base,
    git,
    http_request,
    kafka,
    pipeline,
    postgres,
    simple,
)

base.load_entry_points()
