"""While the database cannot be reached, every request is a 503 with Retry-After (a problem
document, or the error page for a browser), never a 500, and /readyz names no connection
details."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lamplighter.app import create_app
from lamplighter.core.db import Database
from lamplighter.core.settings import Settings
from tests.conftest import auth, make_token, make_user

HOOK = {
    "name": "h",
    "url": "https://x.example.com/",
    "event_types": ["team.*"],
    "owner_team": "ops",
}
HTML = {"Accept": "text/html"}
BEARER: dict[str, str] = {}
REQUESTS: list[tuple[str, str, dict[str, str], Any]] = [
    ("GET", "/api/v1/teams", BEARER, None),
    ("GET", "/api/v1/catalog/entities", BEARER, None),
    ("GET", "/api/v1/events", BEARER, None),
    (
        "POST",
        "/api/v1/teams",
        BEARER,
        {"slug": "ops", "name": "Ops", "lead_email": "ops@example.com"},
    ),
    ("POST", "/api/v1/webhooks", BEARER, HOOK),
    ("GET", "/teams", {**HTML, "Cookie": "ll_session=abc"}, None),
    ("GET", "/catalog", {**HTML, "Cookie": "ll_session=abc"}, None),
    ("GET", "/readyz", {}, None),
]


def test_every_request_is_a_503_with_retry_after_while_the_database_is_down(
    db: Database, database_url: str, settings: Settings
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL-only: an unreachable server (SQLite has none)")
    BEARER.update(auth(make_token(db, make_user(db, email="ops@example.com", role="admin"))))
    app = create_app(settings)  # its own engine and pool, apart from the test's
    engine = app.state.db.engine

    statuses: list[tuple[str, int]] = []
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            for _ in range(3):  # the pool holds live connections
                assert client.get("/api/v1/teams", headers=BEARER).status_code == 200

            @sa.event.listens_for(engine, "do_connect")
            def server_gone(dialect: Any, record: Any, cargs: Any, cparams: Any) -> None:
                cparams["port"] = 1  # new connections go to a closed port: the server is gone

            with db.engine.connect() as admin:  # and loses them, as in a restart
                admin.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
            for method, path, headers, body in itertools.islice(itertools.cycle(REQUESTS), 50):
                response = client.request(method, path, headers=headers, json=body)
                statuses.append((path, response.status_code))
                assert response.status_code == 503, (method, path, response.text[:300])
                assert response.headers.get("retry-after"), (method, path)
                if path == "/readyz":
                    assert response.json() == {"status": "unavailable"}
                elif path.startswith("/api/"):
                    assert response.headers["content-type"].startswith("application/problem+json")
                else:
                    assert response.headers["content-type"].startswith("text/html")
    finally:
        engine.dispose()
        db.engine.dispose()  # the test's own pool lost its connections too
    assert len(statuses) == 50
