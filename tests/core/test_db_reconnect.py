"""A database connection dropped under the app (a restart, a failover) costs one 503, not more."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lamplighter.app import create_app
from lamplighter.core.db import Database
from lamplighter.core.settings import Settings
from tests.conftest import auth, make_token, make_user


def test_a_dropped_connection_is_a_503_once_then_the_app_reconnects(
    db: Database, database_url: str, settings: Settings
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL-only: SQLite has no server to drop the connection")
    headers = auth(make_token(db, make_user(db, email="ops@example.com")))
    app = create_app(settings)  # its own engine and pool, apart from the test's
    own: Database = app.state.db
    try:
        with TestClient(app) as client:
            assert client.get("/api/v1/teams", headers=headers).status_code == 200
            # Drop every connection of this database but the one doing it, as a restart would.
            with db.engine.connect() as admin:
                admin.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )

            lost: Any = client.get("/api/v1/teams", headers=headers)
            assert lost.status_code == 503, lost.text
            assert lost.headers["content-type"].startswith("application/problem+json")
            assert lost.headers["retry-after"] == "1"
            assert lost.json()["type"].endswith("/database-unavailable")

            again = client.get("/api/v1/teams", headers=headers)
            assert again.status_code == 200, again.text
            assert client.get("/readyz").status_code == 200
    finally:
        own.dispose()
        db.engine.dispose()  # the test's own pool lost its connections too
