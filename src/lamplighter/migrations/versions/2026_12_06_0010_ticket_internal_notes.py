"""ticket internal notes: a comment may be an SRE-only note

A comment marked internal is read by SREs and admins only; the requester and other members
never see it, on the page, in the API or in their inbox. Existing comments stay public.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ticket_comments") as batch:
        batch.add_column(
            sa.Column("internal", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("ticket_comments") as batch:
        batch.drop_column("internal")
