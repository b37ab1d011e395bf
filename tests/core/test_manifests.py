"""Every built-in domain's manifest names things that exist, and the app, the CLI, the nav and
the table registry are built from the manifests alone."""

from __future__ import annotations

import typer
from fastapi import APIRouter

from lamplighter import cli, domains
from lamplighter.core import events, jobs, webui
from lamplighter.core.db import Base
from lamplighter.core.manifest import resolve


def test_every_reference_in_a_manifest_resolves() -> None:
    names = []
    for manifest in domains.manifests():
        names.append(manifest.name)
        for reference in (*manifest.api, *manifest.pages):
            assert isinstance(resolve(reference), APIRouter), reference
        for name, reference in manifest.cli.items():
            target = resolve(reference)
            assert isinstance(target, typer.Typer) or callable(target), (name, reference)
        for reference in (*manifest.entity_panels, *manifest.team_panels, *manifest.on_start):
            assert callable(resolve(reference)), reference
        if manifest.demo is not None:
            assert callable(resolve(manifest.demo)), manifest.demo
        for subscription in manifest.subscriptions:
            assert subscription.kind in jobs.HANDLERS, subscription
    assert names == [
        "core",
        "catalog",
        "tickets",
        "selfservice",
        "slo",
        "alerting",
        "oncall",
    ]  # the layers' order


def test_the_cli_lists_each_domains_commands_from_its_manifest() -> None:
    for manifest in domains.manifests():
        for name in manifest.cli:
            assert name in cli.COMMANDS
    assert {"catalog", "ticket", "template", "run", "user", "demo"} <= set(cli.COMMANDS)


def test_each_domains_tables_and_event_types_are_registered() -> None:
    tables = set(Base.metadata.tables)
    assert {"users", "catalog_entities", "tickets", "selfservice_runs"} <= tables
    prefixes = {name.split(".")[0] for name in events.TYPES}
    assert {"user", "team", "catalog", "ticket", "selfservice", "access"} <= prefixes


def test_the_navigation_is_the_manifests_entries_in_their_order() -> None:
    webui.set_navigation([entry for m in domains.manifests() for entry in m.nav])
    assert [(d.path, d.label) for d in webui.NAVIGATION] == [
        ("/catalog", "Catalog"),
        ("/tickets", "Tickets"),
        ("/selfservice", "Self-service"),
        ("/slos", "SLOs"),
        ("/alerts", "Alerts"),
    ]
