"""The Backstage import and the API keep the same rules: an entity created through the API and
the same entity imported from a catalog file are stored alike, field by field, with the same
content hash and search text, the same audit snapshot, and tell subscribers the same events."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from lamplighter.catalog import backstage
from lamplighter.catalog import service as catalog
from lamplighter.catalog.models import Entity, Relation, SearchDocument
from lamplighter.core.db import Database
from lamplighter.core.models import AuditEntry, Event
from lamplighter.core.settings import Settings
from tests.conftest import SYSTEM, make_team, make_user

# What differs by nature: identity, timestamps, and where it came from.
ORIGIN = {"id", "created_at", "updated_at", "provenance", "location"}

YAML = """\
apiVersion: backstage.io/v1alpha1
kind: System
metadata:
  name: payments
spec:
  owner: group:payments
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: ledger
  title: Ledger
  description: Double-entry bookkeeping for every payment.
  tags: [python, money, python]
  labels:
    tier-name: gold
  annotations:
    github.com/project-slug: acme/ledger
    lamplighter.io/tier: "1"
    lamplighter.io/cost-centre: CC-42
  links:
    - url: https://runbooks.example.com/ledger
      title: Runbook
spec:
  type: service
  lifecycle: production
  owner: group:payments
  system: payments
  dependsOn: [resource:ledger-db]
---
apiVersion: backstage.io/v1alpha1
kind: Resource
metadata:
  name: ledger-db
spec:
  type: database
  owner: group:payments
"""


def _through_the_api(db: Database) -> None:
    with db.transaction() as session:
        for data in (
            catalog.EntityInput(kind="system", name="payments", owner="payments"),
            catalog.EntityInput(
                kind="resource", name="ledger-db", owner="payments", type="database"
            ),
            catalog.EntityInput(
                kind="service",
                name="ledger",
                owner="payments",
                title="Ledger",
                description="Double-entry bookkeeping for every payment.",
                type="service",
                lifecycle="production",
                tier=1,
                cost_centre="CC-42",
                tags=["python", "money", "python"],
                labels={"tier-name": "gold"},
                annotations={"github.com/project-slug": "acme/ledger"},
                links=[{"url": "https://runbooks.example.com/ledger", "title": "Runbook"}],
                system="payments",
                depends_on=["resource:ledger-db"],
            ),
        ):
            catalog.create(session=session, actor=SYSTEM, data=data)


def _through_an_import(db: Database, settings: Settings) -> None:
    with db.transaction() as session:
        report = backstage.import_files(
            session=session, actor=SYSTEM, files={"catalog-info.yaml": YAML}, settings=settings
        )
    assert report.errors == [], report.errors


def _stored(db: Database) -> dict[str, Any]:
    with db.sessionmaker() as session:
        entity = session.scalars(sa.select(Entity).where(Entity.name == "ledger")).one()
        row = {c.key: getattr(entity, c.key) for c in sa.inspect(Entity).column_attrs}
        relations = sorted(
            (kind, target.ref)
            for kind, target in session.execute(
                sa.select(Relation.type, Entity)
                .join(Entity, Entity.id == Relation.target_id)
                .where(Relation.source_id == entity.id)
            ).all()
        )
        search = session.get(SearchDocument, entity.id)
        created = session.scalars(
            sa.select(Event.payload)
            .where(Event.type == "catalog.entity_created", Event.subject == entity.ref)
            .order_by(Event.id.desc())
            .limit(1)
        ).one()
        audited = session.scalars(
            sa.select(AuditEntry.diff)
            .where(AuditEntry.action == "catalog.create", AuditEntry.object_id == entity.ref)
            .order_by(AuditEntry.id.desc())
            .limit(1)
        ).one()
    return {
        "row": {k: v for k, v in row.items() if k not in ORIGIN},
        "audit": audited,
        "relations": relations,
        "search": search.body if search else None,
        "event": {k: v for k, v in created.items() if k != "via"},
        "via": created["via"],
    }


def test_an_entity_is_the_same_whether_created_by_the_api_or_imported(
    db: Database, settings: Settings
) -> None:
    make_team(db, slug="payments", lead=make_user(db, email="lead@example.com"))
    _through_the_api(db)
    by_api = _stored(db)
    with db.transaction() as session:
        for ref in (
            "service:default/ledger",
            "resource:default/ledger-db",
            "system:default/payments",
        ):
            catalog.delete(session=session, actor=SYSTEM, ref=ref)
    _through_an_import(db, settings)
    imported = _stored(db)

    assert (by_api["via"], imported["via"]) == ("api", "import")
    for part in ("row", "relations", "search", "event", "audit"):
        assert imported[part] == by_api[part], part
    assert imported["row"]["content_hash"] == by_api["row"]["content_hash"]
    assert imported["row"]["tags"] == ["money", "python"]


def test_an_import_finds_an_entity_registered_by_hand_unchanged(
    db: Database, settings: Settings
) -> None:
    make_team(db, slug="payments", lead=make_user(db, email="lead@example.com"))
    _through_the_api(db)
    with db.transaction() as session:
        report = backstage.import_files(
            session=session, actor=SYSTEM, files={"catalog-info.yaml": YAML}, settings=settings
        )
    assert (len(report.created), len(report.updated), report.unchanged) == (0, 0, 3)
