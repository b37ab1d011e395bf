"""alerts: no foreign keys on integration_id and group_id

Every alert row paid two foreign-key checks on insert (a quarter of PostgreSQL's work per alert
at 40,000 alerts/s). The intake writes both ids from rows it read or wrote in the same
transaction, and ``integrations.delete`` removes an integration's alerts itself before the
integration (whose groups still cascade). ``silence_id`` keeps its key (NULL on most rows; a
deleted silence or maintenance window still sets it NULL).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 23:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_constraint("fk_alerts_integration_id_alert_integrations", type_="foreignkey")
        batch.drop_constraint("fk_alerts_group_id_alert_groups", type_="foreignkey")


def downgrade() -> None:
    op.execute(
        "DELETE FROM alerts WHERE integration_id NOT IN (SELECT id FROM alert_integrations)"
        " OR group_id NOT IN (SELECT id FROM alert_groups)"
    )
    with op.batch_alter_table("alerts") as batch:
        batch.create_foreign_key(
            "fk_alerts_integration_id_alert_integrations",
            "alert_integrations",
            ["integration_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_foreign_key(
            "fk_alerts_group_id_alert_groups",
            "alert_groups",
            ["group_id"],
            ["id"],
            ondelete="CASCADE",
        )
