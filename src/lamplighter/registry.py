"""What every Lamplighter process registers at start-up: tables, job handlers and actions.

The web app and the CLI's local commands (``lamplighter worker`` among them) call :func:`load`
through :func:`lamplighter.core.plugins.load_plugins`, so a standalone worker knows every job
kind the web process can enqueue.
"""

from __future__ import annotations

import lamplighter.core.webhooks
import lamplighter.models_registry
import lamplighter.selfservice.grants
import lamplighter.selfservice.runner
from lamplighter.selfservice.actions import (
    base,
    git,
    http_request,
    kafka,
    pipeline,
    postgres,
    simple,
)

BUILTIN_MODULES = (
    lamplighter.core.webhooks,
    lamplighter.models_registry,
    lamplighter.selfservice.grants,
    lamplighter.selfservice.runner,
    git,
    http_request,
    kafka,
    pipeline,
    postgres,
    simple,
)


def load() -> None:
    """Register the built-in handlers and actions (imported above) and the actions of installed
    packages (the ``lamplighter.actions`` entry points)."""
    base.load_entry_points()
