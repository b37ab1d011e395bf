"""The list of domains, and what every process does with their manifests.

This is the one place that names the domains. The web app (:mod:`lamplighter.app`), the CLI
(:mod:`lamplighter.cli`), the table registry and the worker all read :func:`manifests`.
A package named in ``LAMPLIGHTER_PLUGINS`` that exports ``manifest`` is a domain too; one that
does not is imported for what it registers (job handlers, actions), as before.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from lamplighter.core import events, migrate
from lamplighter.core.manifest import ENTITY_FACTS, Manifest, resolve
from lamplighter.core.settings import Settings

# In the order of DESIGN.md's layers: each may use the ones before it, never one after.
BUILTIN: tuple[str, ...] = (
    "lamplighter.core.manifest:manifest",
    "lamplighter.catalog.manifest:manifest",
    "lamplighter.tickets.manifest:manifest",
    "lamplighter.selfservice.manifest:manifest",
    "lamplighter.slo.manifest:manifest",
    "lamplighter.alerting.manifest:manifest",
    "lamplighter.oncall.manifest:manifest",
)

_LOADED: dict[str, Manifest] = {}
_IMPORTED: set[str] = set()


def plugin_names(settings: Settings | None) -> list[str]:
    if settings is None:
        return []
    return [part.strip() for part in settings.plugins.split(",") if part.strip()]


def manifests(settings: Settings | None = None) -> list[Manifest]:
    """The built-in domains' manifests, then those of plugin packages that have one."""
    found: list[Manifest] = [resolve(reference) for reference in BUILTIN]
    for name in plugin_names(settings):
        module = importlib.import_module(name)
        manifest = getattr(module, "manifest", None)
        if isinstance(manifest, Manifest):
            found.append(manifest)
    return found


def import_models(settings: Settings | None = None) -> None:
    """Import every domain's tables (Alembic, the test suite, the app)."""
    for manifest in manifests(settings):
        for module in manifest.models:
            importlib.import_module(module)


def load(settings: Settings | None = None) -> list[Manifest]:
    """Register what every domain brings to a process: tables, event types, job handlers,
    recurring jobs, actions, panels, entity facts and event subscriptions. Idempotent."""
    loaded = manifests(settings)
    for manifest in loaded:
        if manifest.name in _LOADED:
            continue
        for module in (*manifest.models, *manifest.event_types, *manifest.registers):
            importlib.import_module(module)
        for subscription in manifest.subscriptions:
            events.subscribe(subscription)
        _add_panels("ENTITY_PANELS", manifest.entity_panels)
        _add_panels("TEAM_PANELS", manifest.team_panels)
        _add_panels("HOME_PANELS", manifest.home_panels)
        for reference in manifest.entity_facts:
            if (fact := resolve(reference)) not in ENTITY_FACTS:
                ENTITY_FACTS.append(fact)
        if manifest.migrations is not None:
            migrate.add_version_location(manifest.migrations)
        _LOADED[manifest.name] = manifest
    for name in plugin_names(settings):  # plain plugin modules: imported for what they register
        if name not in _IMPORTED:
            importlib.import_module(name)
            _IMPORTED.add(name)
    return loaded


def _panels(registry: str) -> list[Any]:
    # The web layer, imported only when a domain has panels (not for every CLI command).
    from lamplighter.core import home, webui

    panels: list[Any] = getattr(home if registry == "HOME_PANELS" else webui, registry)
    return panels


def _add_panels(registry: str, references: Iterable[str]) -> None:
    for reference in references:
        panels = _panels(registry)
        if (panel := resolve(reference)) not in panels:
            panels.append(panel)


def unload(manifest: Manifest) -> None:
    """Forget a domain's subscriptions and migrations (tests that add a domain for a while)."""
    for subscription in manifest.subscriptions:
        events.unsubscribe(subscription)
    for registry, references in (
        ("ENTITY_PANELS", manifest.entity_panels),
        ("TEAM_PANELS", manifest.team_panels),
        ("HOME_PANELS", manifest.home_panels),
    ):
        for reference in references:
            panels = _panels(registry)
            if (panel := resolve(reference)) in panels:
                panels.remove(panel)
    for reference in manifest.entity_facts:
        if (fact := resolve(reference)) in ENTITY_FACTS:
            ENTITY_FACTS.remove(fact)
    if manifest.migrations is not None:
        migrate.remove_version_location(manifest.migrations)
    _LOADED.pop(manifest.name, None)
    _SETTINGS.pop(manifest.name, None)


def settings_of(name: str) -> Any:
    """A loaded domain's own settings (its manifest's pydantic-settings class, read from the
    environment once)."""
    manifest = _LOADED[name]
    if manifest.settings is None:
        raise LookupError(f"domain {name!r} has no settings of its own")
    if name not in _SETTINGS:
        _SETTINGS[name] = manifest.settings()
    return _SETTINGS[name]


_SETTINGS: dict[str, Any] = {}


def commands(settings: Settings | None = None) -> dict[str, str]:
    """CLI command name -> "module:attribute", from every manifest."""
    found: dict[str, str] = {}
    for manifest in manifests(settings):
        for name, reference in manifest.cli.items():
            if name in found:
                raise RuntimeError(f"two domains define the command {name!r}")
            found[name] = reference
    return found


def references(kind: str, settings: Settings | None = None) -> Iterable[str]:
    for manifest in manifests(settings):
        yield from getattr(manifest, kind)
