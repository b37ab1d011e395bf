"""catalog search: a stored tsvector column on PostgreSQL

Ranking and matching on a stored, GIN-indexed tsvector avoids computing to_tsvector for every
candidate row at query time. SQLite keeps its FTS5 table; nothing changes there.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 01:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "ALTER TABLE catalog_search ADD COLUMN search_vector tsvector "
        "GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED"
    )
    op.execute("DROP INDEX IF EXISTS ix_catalog_search_fts")
    op.execute("CREATE INDEX ix_catalog_search_vector ON catalog_search USING gin (search_vector)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_catalog_search_vector")
    op.execute("ALTER TABLE catalog_search DROP COLUMN search_vector")
    op.execute(
        "CREATE INDEX ix_catalog_search_fts ON catalog_search USING gin (to_tsvector('simple', body))"
    )
