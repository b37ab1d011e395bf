"""trust boundaries: template drafts under review, stored run outputs, versioned audit hashes

A template keeps its published definition (what runs) and, beside it, a draft waiting for the
platform team's review when it uses privileged actions. A run stores its rendered outputs once,
when it ends. An audit entry records which canonical form its hash was taken over (1: the
original, 2: RFC 8785 JSON canonicalisation, the same on SQLite and PostgreSQL).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("selfservice_templates") as batch:
        batch.add_column(sa.Column("draft", JSON, nullable=True))
        batch.add_column(sa.Column("draft_submitted_by", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("draft_submitted_at", UTC_DATETIME, nullable=True))
        batch.add_column(sa.Column("published_by", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("published_at", UTC_DATETIME, nullable=True))
        batch.create_foreign_key(
            "fk_selfservice_templates_draft_submitted_by",
            "users",
            ["draft_submitted_by"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_foreign_key(
            "fk_selfservice_templates_published_by",
            "users",
            ["published_by"],
            ["id"],
            ondelete="SET NULL",
        )
    with op.batch_alter_table("selfservice_runs") as batch:
        batch.add_column(sa.Column("outputs", JSON, nullable=True))
    with op.batch_alter_table("audit_entries") as batch:
        batch.add_column(
            sa.Column("hash_version", sa.SmallInteger(), nullable=False, server_default="1")
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_entries") as batch:
        batch.drop_column("hash_version")
    with op.batch_alter_table("selfservice_runs") as batch:
        batch.drop_column("outputs")
    with op.batch_alter_table("selfservice_templates") as batch:
        batch.drop_constraint("fk_selfservice_templates_published_by", type_="foreignkey")
        batch.drop_constraint("fk_selfservice_templates_draft_submitted_by", type_="foreignkey")
        batch.drop_column("published_at")
        batch.drop_column("published_by")
        batch.drop_column("draft_submitted_at")
        batch.drop_column("draft_submitted_by")
        batch.drop_column("draft")
