"""selfservice: templates, runs, run steps and run secrets

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 14:08:32
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "selfservice_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("owner_team_id", sa.Integer(), nullable=False),
        sa.Column(
            "spec",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("source_path", sa.String(length=1000), nullable=True),
        sa.Column("request_type", sa.String(length=63), nullable=True),
        sa.Column("approval", sa.String(length=16), nullable=False),
        sa.Column("allowed_teams", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_team_id"],
            ["teams.id"],
            name=op.f("fk_selfservice_templates_owner_team_id_teams"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_selfservice_templates")),
        sa.UniqueConstraint("name", name=op.f("uq_selfservice_templates_name")),
    )
    with op.batch_alter_table("selfservice_templates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_selfservice_templates_owner_team_id"), ["owner_team_id"], unique=False
        )

    op.create_table(
        "selfservice_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("template_version", sa.Integer(), nullable=False),
        sa.Column(
            "spec",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "parameters",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("requester_user_id", sa.Integer(), nullable=True),
        sa.Column("requesting_team_id", sa.Integer(), nullable=True),
        sa.Column("approver_user_id", sa.Integer(), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("failed_step", sa.String(length=63), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["approver_user_id"],
            ["users.id"],
            name=op.f("fk_selfservice_runs_approver_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["requester_user_id"],
            ["users.id"],
            name=op.f("fk_selfservice_runs_requester_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["requesting_team_id"],
            ["teams.id"],
            name=op.f("fk_selfservice_runs_requesting_team_id_teams"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["selfservice_templates.id"],
            name=op.f("fk_selfservice_runs_template_id_selfservice_templates"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_selfservice_runs_ticket_id_tickets"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_selfservice_runs")),
    )
    with op.batch_alter_table("selfservice_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_selfservice_runs_requester", ["requester_user_id", "created_at"], unique=False
        )
        batch_op.create_index("ix_selfservice_runs_status", ["status"], unique=False)
        batch_op.create_index(
            "ix_selfservice_runs_template", ["template_id", "created_at"], unique=False
        )

    op.create_table(
        "selfservice_run_secrets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revealed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["selfservice_runs.id"],
            name=op.f("fk_selfservice_run_secrets_run_id_selfservice_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_selfservice_run_secrets")),
        sa.UniqueConstraint("run_id", "name", name="uq_selfservice_run_secrets_run"),
    )
    op.create_table(
        "selfservice_run_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.String(length=63), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column(
            "input",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "output",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("log", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["selfservice_runs.id"],
            name=op.f("fk_selfservice_run_steps_run_id_selfservice_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_selfservice_run_steps")),
        sa.UniqueConstraint("run_id", "index", name="uq_selfservice_run_steps_run"),
    )


def downgrade() -> None:

    op.drop_table("selfservice_run_steps")
    op.drop_table("selfservice_run_secrets")
    with op.batch_alter_table("selfservice_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_selfservice_runs_template")
        batch_op.drop_index("ix_selfservice_runs_status")
        batch_op.drop_index("ix_selfservice_runs_requester")

    op.drop_table("selfservice_runs")
    with op.batch_alter_table("selfservice_templates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_selfservice_templates_owner_team_id"))

    op.drop_table("selfservice_templates")
