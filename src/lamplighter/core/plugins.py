"""Loads extra modules named in LAMPLIGHTER_PLUGINS (job handlers, actions) at start-up."""

from __future__ import annotations

import importlib

from lamplighter.core.settings import Settings

_LOADED: set[str] = set()


def load_plugins(settings: Settings) -> None:
    import lamplighter.core.webhooks  # noqa: F401 - registers the webhook delivery handler

    for name in filter(None, (part.strip() for part in settings.plugins.split(","))):
        if name not in _LOADED:
            importlib.import_module(name)
            _LOADED.add(name)
