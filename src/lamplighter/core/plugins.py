"""Loads every domain (its manifest) and extra modules named in LAMPLIGHTER_PLUGINS at start-up."""

from __future__ import annotations

import importlib

from lamplighter.core.settings import Settings


def load_plugins(settings: Settings) -> None:
    """Register every domain's tables, event types, handlers, actions and subscriptions, and
    import the plugin modules. By name: core does not import the composition layer above it."""
    importlib.import_module("lamplighter.domains").load(settings)
