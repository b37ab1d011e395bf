"""catalog: organisations as Backstage models them

Teams form a hierarchy (type, parent, namespace; a team may have no lead; placeholder and
personal teams), users keep their Backstage reference, entities of any kind are kept (their
whole document), owners may be Users, and relations to entities not in the catalog yet are kept.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 06:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # On SQLite a batch rebuilds the table; the migration connection runs with foreign keys off
    # (Alembic's own engine), so dropping the old table cascades to nothing.
    with op.batch_alter_table("teams") as batch:
        batch.alter_column("lead_user_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(
            sa.Column("type", sa.String(length=63), nullable=False, server_default="team")
        )
        batch.add_column(
            sa.Column("namespace", sa.String(length=63), nullable=False, server_default="default")
        )
        batch.add_column(sa.Column("parent_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("parent_ref", sa.String(length=200), nullable=True))
        batch.add_column(
            sa.Column("origin", sa.String(length=16), nullable=False, server_default="manual")
        )
        batch.create_foreign_key(
            op.f("fk_teams_parent_id_teams"), "teams", ["parent_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_index(op.f("ix_teams_parent_id"), ["parent_id"], unique=False)
    with op.batch_alter_table("teams") as batch:
        for column in ("type", "namespace", "origin"):
            batch.alter_column(column, server_default=None)
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("catalog_namespace", sa.String(length=63), nullable=True))
        batch.add_column(sa.Column("catalog_name", sa.String(length=63), nullable=True))
        batch.create_unique_constraint(
            op.f("uq_users_catalog_ref"), ["catalog_namespace", "catalog_name"]
        )
    with op.batch_alter_table("catalog_entities") as batch:
        batch.alter_column("kind", existing_type=sa.String(length=16), type_=sa.String(length=63))
        batch.add_column(sa.Column("owner_ref", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("document", JSON, nullable=True))
    op.create_table(
        "catalog_unresolved",
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("target_kind", sa.String(length=63), nullable=False),
        sa.Column("target_namespace", sa.String(length=63), nullable=False),
        sa.Column("target_key", sa.String(length=63), nullable=False),
        sa.Column("target_name", sa.String(length=63), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["catalog_entities.id"],
            name=op.f("fk_catalog_unresolved_source_id_catalog_entities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "source_id",
            "type",
            "target_kind",
            "target_namespace",
            "target_key",
            name=op.f("pk_catalog_unresolved"),
        ),
    )
    op.create_index(
        "ix_catalog_unresolved_target",
        "catalog_unresolved",
        ["target_kind", "target_namespace", "target_key"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_catalog_unresolved_target", table_name="catalog_unresolved")
    op.drop_table("catalog_unresolved")
    with op.batch_alter_table("catalog_entities") as batch:
        batch.drop_column("document")
        batch.drop_column("owner_ref")
        batch.alter_column("kind", existing_type=sa.String(length=63), type_=sa.String(length=16))
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint(op.f("uq_users_catalog_ref"), type_="unique")
        batch.drop_column("catalog_name")
        batch.drop_column("catalog_namespace")
    with op.batch_alter_table("teams") as batch:
        batch.drop_index(op.f("ix_teams_parent_id"))
        batch.drop_constraint(op.f("fk_teams_parent_id_teams"), type_="foreignkey")
        for column in ("origin", "parent_ref", "parent_id", "namespace", "type"):
            batch.drop_column(column)
        batch.alter_column("lead_user_id", existing_type=sa.Integer(), nullable=False)
