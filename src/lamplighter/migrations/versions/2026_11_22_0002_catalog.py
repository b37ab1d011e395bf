"""catalog

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 00:42:45.018635
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "catalog_entities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("name_key", sa.String(length=63), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("type", sa.String(length=63), nullable=True),
        sa.Column("owner_team_id", sa.Integer(), nullable=True),
        sa.Column("accountable_user_id", sa.Integer(), nullable=True),
        sa.Column("lifecycle", sa.String(length=16), nullable=False),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column(
            "labels",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "annotations",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("links", sa.JSON(), nullable=False),
        sa.Column("cost_centre", sa.String(length=100), nullable=True),
        sa.Column("version", sa.String(length=63), nullable=True),
        sa.Column("provenance", sa.String(length=16), nullable=False),
        sa.Column("location", sa.String(length=1000), nullable=True),
        sa.Column(
            "spec_extra",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["accountable_user_id"],
            ["users.id"],
            name=op.f("fk_catalog_entities_accountable_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["owner_team_id"],
            ["teams.id"],
            name=op.f("fk_catalog_entities_owner_team_id_teams"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_entities")),
        sa.UniqueConstraint("kind", "namespace", "name_key", name="uq_catalog_entities_ref"),
    )
    with op.batch_alter_table("catalog_entities", schema=None) as batch_op:
        batch_op.create_index(
            "ix_catalog_entities_accountable", ["accountable_user_id"], unique=False
        )
        batch_op.create_index("ix_catalog_entities_kind_type", ["kind", "type"], unique=False)
        batch_op.create_index("ix_catalog_entities_location", ["location"], unique=False)
        batch_op.create_index("ix_catalog_entities_owner", ["owner_team_id"], unique=False)

    op.create_table(
        "catalog_entity_tags",
        sa.Column("tag", sa.String(length=63), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["entity_id"],
            ["catalog_entities.id"],
            name=op.f("fk_catalog_entity_tags_entity_id_catalog_entities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tag", "entity_id", name=op.f("pk_catalog_entity_tags")),
    )
    with op.batch_alter_table("catalog_entity_tags", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_catalog_entity_tags_entity_id"), ["entity_id"], unique=False
        )

    op.create_table(
        "catalog_relations",
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["catalog_entities.id"],
            name=op.f("fk_catalog_relations_source_id_catalog_entities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["target_id"],
            ["catalog_entities.id"],
            name=op.f("fk_catalog_relations_target_id_catalog_entities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "source_id", "type", "target_id", name=op.f("pk_catalog_relations")
        ),
    )
    with op.batch_alter_table("catalog_relations", schema=None) as batch_op:
        batch_op.create_index("ix_catalog_relations_target", ["target_id", "type"], unique=False)

    op.create_table(
        "catalog_search",
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["entity_id"],
            ["catalog_entities.id"],
            name=op.f("fk_catalog_search_entity_id_catalog_entities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("entity_id", name=op.f("pk_catalog_search")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE INDEX ix_catalog_search_fts ON catalog_search "
            "USING gin (to_tsvector('simple', body))"
        )
    else:
        # An external-content FTS5 index over catalog_search, kept in step by triggers.
        op.execute(
            "CREATE VIRTUAL TABLE catalog_search_fts USING fts5("
            "body, content='catalog_search', content_rowid='entity_id')"
        )
        op.execute(
            "CREATE TRIGGER catalog_search_ai AFTER INSERT ON catalog_search BEGIN "
            "INSERT INTO catalog_search_fts(rowid, body) VALUES (new.entity_id, new.body); END"
        )
        op.execute(
            "CREATE TRIGGER catalog_search_ad AFTER DELETE ON catalog_search BEGIN "
            "INSERT INTO catalog_search_fts(catalog_search_fts, rowid, body) "
            "VALUES ('delete', old.entity_id, old.body); END"
        )
        op.execute(
            "CREATE TRIGGER catalog_search_au AFTER UPDATE ON catalog_search BEGIN "
            "INSERT INTO catalog_search_fts(catalog_search_fts, rowid, body) "
            "VALUES ('delete', old.entity_id, old.body); "
            "INSERT INTO catalog_search_fts(rowid, body) VALUES (new.entity_id, new.body); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_catalog_search_fts")
    else:
        for trigger in ("catalog_search_ai", "catalog_search_ad", "catalog_search_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS catalog_search_fts")
    op.drop_table("catalog_search")
    with op.batch_alter_table("catalog_relations", schema=None) as batch_op:
        batch_op.drop_index("ix_catalog_relations_target")

    op.drop_table("catalog_relations")
    with op.batch_alter_table("catalog_entity_tags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_catalog_entity_tags_entity_id"))

    op.drop_table("catalog_entity_tags")
    with op.batch_alter_table("catalog_entities", schema=None) as batch_op:
        batch_op.drop_index("ix_catalog_entities_owner")
        batch_op.drop_index("ix_catalog_entities_location")
        batch_op.drop_index("ix_catalog_entities_kind_type")
        batch_op.drop_index("ix_catalog_entities_accountable")

    op.drop_table("catalog_entities")
