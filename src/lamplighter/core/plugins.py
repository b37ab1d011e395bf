"""Loads extra modules named in LAMPLIGHTER_PLUGINS (job handlers, actions) at start-up."""

from __future__ import annotations

import importlib

from lamplighter.core.settings import Settings

_LOADED: set[str] = set()


def load_plugins(settings: Settings) -> None:
    if "lamplighter.registry" not in _LOADED:
        # The built-in job handlers and actions; by name, as core does not import the domains.
        importlib.import_module("lamplighter.registry").load()
        _LOADED.add("lamplighter.registry")

    for name in filter(None, (part.strip() for part in settings.plugins.split(","))):
        if name not in _LOADED:
            importlib.import_module(name)
            _LOADED.add(name)
