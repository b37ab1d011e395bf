"""slo: SLOs on catalog entities, their counters, daily history, probe results and
release-freeze exceptions

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 13:56:02.499941
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "slo_freeze_exceptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by_user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_user_id"],
            ["users.id"],
            name=op.f("fk_slo_freeze_exceptions_created_by_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["entity_id"],
            ["catalog_entities.id"],
            name=op.f("fk_slo_freeze_exceptions_entity_id_catalog_entities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slo_freeze_exceptions")),
    )
    with op.batch_alter_table("slo_freeze_exceptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_slo_freeze_exceptions_entity_id"), ["entity_id"], unique=False
        )

    op.create_table(
        "slos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("objective", sa.Float(), nullable=False),
        sa.Column("window_kind", sa.String(length=16), nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=True),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("budgeting", sa.String(length=16), nullable=False),
        sa.Column("slice_seconds", sa.Integer(), nullable=True),
        sa.Column("slice_threshold", sa.Float(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column(
            "sli",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "probe",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "alerting",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "labels",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "policy",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("ingest_key_hash", sa.String(length=64), nullable=True),
        sa.Column("ingest_key_hint", sa.String(length=8), nullable=True),
        sa.Column("origin", sa.String(length=500), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=False),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attainment", sa.Float(), nullable=True),
        sa.Column("good_events", sa.Float(), nullable=True),
        sa.Column("total_events", sa.Float(), nullable=True),
        sa.Column("budget_total", sa.Float(), nullable=True),
        sa.Column("budget_spent", sa.Float(), nullable=True),
        sa.Column("budget_remaining", sa.Float(), nullable=True),
        sa.Column(
            "burn_rates",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("firing", sa.JSON(), nullable=False),
        sa.Column("exhaustion_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("threshold_notified", sa.Integer(), nullable=False),
        sa.Column("frozen", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["entity_id"],
            ["catalog_entities.id"],
            name=op.f("fk_slos_entity_id_catalog_entities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slos")),
        sa.UniqueConstraint("entity_id", "name", name="uq_slos_entity_name"),
    )
    with op.batch_alter_table("slos", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_slos_entity_id"), ["entity_id"], unique=False)
        batch_op.create_index("ix_slos_ingest_key", ["ingest_key_hash"], unique=False)
        batch_op.create_index("ix_slos_status", ["status", "budget_remaining"], unique=False)

    op.create_table(
        "slo_counts",
        sa.Column("slo_id", sa.Integer(), nullable=False),
        sa.Column("resolution", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("good", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["slo_id"], ["slos.id"], name=op.f("fk_slo_counts_slo_id_slos"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("slo_id", "resolution", "at", name=op.f("pk_slo_counts")),
    )
    op.create_table(
        "slo_daily",
        sa.Column("slo_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("good", sa.Float(), nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.Column("attainment", sa.Float(), nullable=True),
        sa.Column("budget_remaining", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["slo_id"], ["slos.id"], name=op.f("fk_slo_daily_slo_id_slos"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("slo_id", "day", name=op.f("pk_slo_daily")),
    )
    op.create_table(
        "slo_probe_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slo_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["slo_id"],
            ["slos.id"],
            name=op.f("fk_slo_probe_results_slo_id_slos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slo_probe_results")),
    )
    with op.batch_alter_table("slo_probe_results", schema=None) as batch_op:
        batch_op.create_index("ix_slo_probe_results_slo_at", ["slo_id", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("slo_probe_results", schema=None) as batch_op:
        batch_op.drop_index("ix_slo_probe_results_slo_at")

    op.drop_table("slo_probe_results")
    op.drop_table("slo_daily")
    op.drop_table("slo_counts")
    with op.batch_alter_table("slos", schema=None) as batch_op:
        batch_op.drop_index("ix_slos_status")
        batch_op.drop_index("ix_slos_ingest_key")
        batch_op.drop_index(batch_op.f("ix_slos_entity_id"))

    op.drop_table("slos")
    with op.batch_alter_table("slo_freeze_exceptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_slo_freeze_exceptions_entity_id"))

    op.drop_table("slo_freeze_exceptions")
