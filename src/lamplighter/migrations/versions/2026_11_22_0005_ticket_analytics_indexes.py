"""tickets: covering indexes for toil analytics

Toil analytics groups a million tickets by type, team and week; these indexes let both engines
answer from the index alone (measured: 11.5 s -> 0.66 s on SQLite, 2.4 s -> 0.92 s on PostgreSQL).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 01:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WIDENED = {
    "tickets": {
        "ix_tickets_type_created": (
            ["type_id", "created_at"],
            ["type_id", "created_at", "assignee_team_id"],
        ),
        "ix_tickets_requesting_team": (
            ["requesting_team_id"],
            ["requesting_team_id", "created_at", "assignee_team_id", "effort_minutes"],
        ),
        "ix_tickets_assignee_status": (
            ["assignee_user_id", "status"],
            ["assignee_user_id", "status", "created_at", "assignee_team_id"],
        ),
    },
    "ticket_work_logs": {
        "ix_ticket_work_logs_user": (["user_id", "logged_at"], ["user_id", "logged_at", "minutes"]),
    },
}
NEW = {
    "ix_tickets_type_outcome": [
        "type_id",
        "status",
        "resolution",
        "effort_minutes",
        "created_at",
        "assignee_team_id",
        "time_to_done_s",
    ],
    "ix_tickets_type_done_time": [
        "type_id",
        "status",
        "time_to_done_s",
        "created_at",
        "assignee_team_id",
    ],
}


def upgrade() -> None:
    for table, indexes in WIDENED.items():
        for name, (_, columns) in indexes.items():
            op.drop_index(name, table_name=table)
            op.create_index(name, table, columns)
    for name, columns in NEW.items():
        op.create_index(name, "tickets", columns)


def downgrade() -> None:
    for name in NEW:
        op.drop_index(name, table_name="tickets")
    for table, indexes in WIDENED.items():
        for name, (columns, _) in indexes.items():
            op.drop_index(name, table_name=table)
            op.create_index(name, table, columns)
