"""The catalog's part of the demo: a commerce domain's systems, services, APIs and resources."""

from __future__ import annotations

from typing import Any

from lamplighter.catalog import service as catalog
from lamplighter.catalog.refs import Ref
from lamplighter.core.context import Actor
from lamplighter.core.db import Database

ACTOR = Actor.system("demo loader")

# kind, name, owner, title, type, extra fields
ENTITIES: list[tuple[str, str, str, str, str | None, dict[str, Any]]] = [
    (
        "domain",
        "commerce",
        "platform",
        "Commerce",
        None,
        {"description": "Everything between a basket and a payout."},
    ),
    ("system", "checkout", "checkout", "Checkout system", None, {"domain": "commerce"}),
    ("system", "payments", "payments", "Payments system", None, {"domain": "commerce"}),
    (
        "platform",
        "container-platform",
        "platform",
        "Container platform v3",
        "kubernetes",
        {"version": "3.4", "tier": 1},
    ),
    (
        "resource",
        "payments-db",
        "payments",
        "Payments database",
        "database",
        {"system": "payments", "tier": 1},
    ),
    ("resource", "orders-topic", "checkout", "Orders topic", "topic", {"system": "checkout"}),
    (
        "resource",
        "checkout-db",
        "checkout",
        "Checkout database",
        "database",
        {"system": "checkout"},
    ),
    (
        "api",
        "payments-api",
        "payments",
        "Payments API",
        "openapi",
        {"system": "payments", "tier": 1},
    ),
    (
        "service",
        "ledger",
        "payments",
        "Ledger",
        "service",
        {
            "system": "payments",
            "tier": 1,
            "tags": ["pci", "money"],
            "depends_on": ["resource:payments-db", "platform:container-platform"],
            "description": "Double-entry ledger of every payment and payout.",
            "links": [
                {
                    "url": "https://runbooks.example.com/ledger",
                    "title": "Runbook",
                    "type": "runbook",
                },
                {
                    "url": "https://grafana.example.com/d/ledger",
                    "title": "Dashboard",
                    "type": "dashboard",
                },
            ],
        },
    ),
    (
        "service",
        "payments-gateway",
        "payments",
        "Payments gateway",
        "service",
        {
            "system": "payments",
            "tier": 1,
            "tags": ["pci"],
            "provides_apis": ["payments-api"],
            "depends_on": ["service:ledger", "platform:container-platform"],
        },
    ),
    (
        "service",
        "checkout-web",
        "checkout",
        "Checkout web",
        "website",
        {
            "system": "checkout",
            "tier": 2,
            "consumes_apis": ["payments-api"],
            "depends_on": [
                "service:payments-gateway",
                "resource:checkout-db",
                "resource:orders-topic",
            ],
        },
    ),
    (
        "service",
        "order-events",
        "checkout",
        "Order events",
        "service",
        {
            "system": "checkout",
            "lifecycle": "experimental",
            "depends_on": ["resource:orders-topic"],
        },
    ),
]


def load(db: Database) -> bool:
    """Create the demo entities unless they are there; whether anything was created."""
    with db.transaction() as session:
        if catalog.find(session, Ref("service", "default", "ledger")) is not None:
            return False
        for kind, name, owner, title, type_, extra in ENTITIES:
            fields: dict[str, Any] = {"title": title, "type": type_, **extra}
            data = catalog.EntityInput(kind=kind, name=name, owner=owner, **fields)
            catalog.create(session=session, actor=ACTOR, data=data)
    return True
