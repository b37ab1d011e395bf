"""The Alembic revisions build exactly the schema the models describe, on both engines."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import lamplighter.models_registry  # noqa: F401
from lamplighter.core.db import Base

# What the migrations add beside the models on purpose: the full-text search machinery.
OUTSIDE_THE_MODELS = ("catalog_search_fts", "search_vector", "ix_catalog_search_vector")


def _ours(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    return not (name is not None and name.startswith(OUTSIDE_THE_MODELS))


def test_models_and_migrations_agree(db: Any) -> None:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": _ours})
        differences = compare_metadata(context, Base.metadata)
    assert differences == [], f"write a migration for: {differences}"
