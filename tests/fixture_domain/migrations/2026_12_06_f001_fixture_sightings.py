"""The fixture domain's one table.

Revision ID: f001
Revises:
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "f001"
down_revision = None
branch_labels = ("fixture",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fixture_sightings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("entity_ref", sa.String(200), nullable=False, index=True),
        sa.Column("event_id", sa.BigInteger, nullable=False, unique=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("fixture_sightings")
