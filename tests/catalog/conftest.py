"""Catalog test data: registering entities through the service."""

from __future__ import annotations

from typing import Any

from lamplighter.catalog import service
from lamplighter.catalog.models import Entity
from lamplighter.core.db import Database
from tests.conftest import SYSTEM


def make_entity(
    db: Database, name: str, owner: str, kind: str = "service", **fields: Any
) -> Entity:
    with db.transaction() as session:
        return service.create(
            session=session,
            actor=SYSTEM,
            data=service.EntityInput(kind=kind, name=name, owner=owner, **fields),
        )
