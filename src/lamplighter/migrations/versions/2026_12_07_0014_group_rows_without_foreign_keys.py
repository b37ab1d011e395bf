"""alert_group_log, notification_deliveries, oncall_escalations: no foreign key on group_id

Every escalation wrote four rows naming its group (two timeline entries, a delivery, the
escalation), and each paid PostgreSQL's foreign-key check: a ``SELECT … FOR KEY SHARE`` on
``alert_groups`` whose plan is cached per connection. Planned while ``alert_groups`` held a few
rows (a quiet system, or one just analysed), that plan is a sequential scan, and it stays one
while an alert storm grows the table a hundredfold within the minute before autovacuum analyses
it again: every check read the whole table, and the first notifications of a storm fell seconds
behind (p99 2.2 s at 1,000 new groups a second). The writers name groups they read in the same
transaction; ``integrations.delete`` removes its groups' timelines itself, and on-call removes
its rows of deleted groups when told (``alert.integration_deleted``).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 02:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("alert_group_log", "notification_deliveries", "oncall_escalations")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_group_id_alert_groups", type_="foreignkey")


def downgrade() -> None:
    for table in TABLES:
        op.execute(
            f"DELETE FROM {table} WHERE group_id NOT IN (SELECT id FROM alert_groups)"  # noqa: S608
        )
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(
                f"fk_{table}_group_id_alert_groups",
                "alert_groups",
                ["group_id"],
                ["id"],
                ondelete="CASCADE",
            )
