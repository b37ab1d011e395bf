"""Operating Lamplighter itself: health, readiness, metrics, migrations and logs."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lamplighter.app import create_app
from lamplighter.core import jobs, migrate
from lamplighter.core.db import Database
from lamplighter.core.logs import JsonFormatter
from lamplighter.core.settings import Settings
from tests.conftest import TEST_SECRET, auth, make_team, make_token, make_user


def test_healthz_needs_no_credentials(client: Any) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_readyz_reports_ready_then_behind(client: Any, db: Any) -> None:
    assert client.get("/readyz").json() == {"status": "ready"}
    with db.engine.begin() as connection:
        head = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
        connection.execute(sa.text("UPDATE alembic_version SET version_num = 'stale'"))
    try:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert "lamplighter db upgrade" in response.json()["reason"]
    finally:
        with db.engine.begin() as connection:
            connection.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": head})


def test_app_refuses_to_start_on_an_empty_database(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    settings = Settings(database_url=url, data_dir=tmp_path, secret_key=TEST_SECRET)
    with pytest.raises(migrate.DatabaseBehind, match="run `lamplighter db upgrade`"):
        create_app(settings)


def test_upgrade_creates_every_table_on_an_empty_database(database_url: str, db: Database) -> None:
    """The session fixture already upgraded an empty database; the schema matches the models."""
    from lamplighter.core.db import Base

    inspector = sa.inspect(db.engine)
    assert set(Base.metadata.tables) <= set(inspector.get_table_names())
    assert migrate.current_revision(db.engine) == migrate.head_revision()


def test_the_start_up_check_agrees_with_alembic(database_url: str, db: Database) -> None:
    """The check reads revisions without loading Alembic; Alembic must see the same ones."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config(database_url))
    assert migrate.head_revision() == script.get_current_head()
    with db.engine.connect() as connection:
        assert migrate.current_revision(db.engine) == (
            MigrationContext.configure(connection).get_current_revision()
        )


def test_a_database_one_revision_behind_is_refused_naming_both(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'behind.db'}"
    head = migrate.head_revision()
    assert head is not None
    migrate.upgrade(url, "head")
    migrate.upgrade(url, "head")  # idempotent
    from alembic import command

    command.downgrade(migrate.alembic_config(url), "-1")
    engine = sa.create_engine(url)
    try:
        behind = migrate.current_revision(engine)
        assert behind is not None and behind != head
        with pytest.raises(migrate.DatabaseBehind, match=f"revision {behind} but .* needs {head}"):
            migrate.check_current(engine)
    finally:
        engine.dispose()


def test_metrics_by_route_template_and_queue(client: Any, db: Any) -> None:
    member = make_user(db)
    team = make_team(db, lead=member)
    token = make_token(db, member)
    client.get(f"/api/v1/teams/{team.slug}", headers=auth(token))
    with db.transaction() as session:
        jobs.enqueue(session=session, kind="core.noop")
    body = client.get("/metrics").text
    assert (
        'lamplighter_http_requests_total{method="GET",route="/api/v1/teams/{slug}",status="200"}'
        in body
    )
    assert (
        'lamplighter_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/api/v1/teams/{slug}"}'
        in body
    )
    depth = [line for line in body.splitlines() if line.startswith("lamplighter_jobs_queue_depth ")]
    assert depth and float(depth[0].split()[1]) >= 1
    assert "lamplighter_jobs_oldest_due_age_seconds" in body
    assert (
        "lamplighter_job_failures_total" in body
        or "# TYPE lamplighter_job_failures_total counter" in body
    )


def test_openapi_and_docs_are_served(client: Any) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/teams/{slug}" in spec["paths"]
    assert client.get("/api/docs").status_code == 200


def test_json_logs_carry_the_request_id(client: Any, db: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="lamplighter.http")
    client.get("/healthz", headers={"x-request-id": "trace-me"})
    client.post("/api/v1/teams", json={}, headers={"x-request-id": "trace-post"})
    by_path = {getattr(r, "path", ""): r for r in caplog.records if r.name == "lamplighter.http"}
    read, change = by_path["/healthz"], by_path["/api/v1/teams"]
    assert read.levelno == logging.DEBUG, "successful reads are logged at DEBUG"
    assert change.levelno == logging.INFO, "changes and failures are logged at INFO"
    line = json.loads(JsonFormatter().format(change))
    assert line["status"] == 401 and line["route"] == "/api/v1/teams" and line["method"] == "POST"
    assert line["level"] == "info" and line["message"] == "request"
    assert line["request_id"] == "trace-post"


def test_token_lifecycle(client: Any, db: Any, settings: Settings) -> None:
    user = make_user(db)
    token = make_token(db, user)
    me = client.get("/api/v1/me", headers=auth(token))
    assert me.status_code == 200 and me.json()["email"] == user.email
    listed = client.get("/api/v1/tokens", headers=auth(token)).json()["items"]
    assert listed[0]["last_used_at"] is not None
    assert "token" not in listed[0]
    revoke = client.delete(f"/api/v1/tokens/{listed[0]['id']}", headers=auth(token))
    assert revoke.status_code == 200
    after = client.get("/api/v1/me", headers=auth(token))
    assert after.status_code == 401 and "revoked" in after.json()["detail"]


def test_expired_token_is_refused(client: Any, db: Any) -> None:
    user = make_user(db)
    token = make_token(db, user)
    with db.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE api_tokens SET expires_at = :t"),
            {"t": "2000-01-01 00:00:00" if db.is_sqlite else "2000-01-01T00:00:00Z"},
        )
    from lamplighter.core import identity

    identity.AUTH_CACHE.clear()
    response = client.get("/api/v1/me", headers=auth(token))
    assert response.status_code == 401 and "expired" in response.json()["detail"]


def test_token_expiry_must_be_in_the_future(client: Any, db: Any) -> None:
    token = make_token(db, make_user(db))
    response = client.post(
        "/api/v1/tokens",
        json={"name": "old", "expires_at": "2001-01-01T00:00:00Z"},
        headers=auth(token),
    )
    assert (
        response.status_code == 422 and response.json()["errors"][0]["field"] == "body.expires_at"
    )
    naive = client.post(
        "/api/v1/tokens",
        json={"name": "naive", "expires_at": "2099-01-01T00:00:00"},
        headers=auth(token),
    )
    assert naive.status_code == 422


def test_deactivated_user_loses_access(client: Any, db: Any) -> None:
    admin_token = make_token(db, make_user(db, role="admin"))
    user = make_user(db)
    token = make_token(db, user)
    assert (
        client.patch(
            f"/api/v1/users/{user.id}", json={"is_active": False}, headers=auth(admin_token)
        ).status_code
        == 200
    )
    assert client.get("/api/v1/me", headers=auth(token)).status_code == 401


def test_secret_key_is_generated_once_into_the_data_dir(tmp_path: Any) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = settings.effective_secret_key()
    assert first == Settings(data_dir=tmp_path / "data").effective_secret_key()
    assert oct((tmp_path / "data" / "secret.key").stat().st_mode)[-3:] == "600"


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Any) -> None:
    database = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with database.engine.connect() as connection:
        assert connection.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
    database.dispose()


def test_client_for_a_new_app_works_without_a_worker(settings: Settings, db: Database) -> None:
    with TestClient(create_app(settings, db=db)) as client:
        assert client.get("/healthz").status_code == 200


def test_every_list_is_cursor_paginated(client: Any, db: Any) -> None:
    user = make_user(db)
    token = make_token(db, user)
    for index in range(2):
        make_token(db, user, name=f"extra-{index}")
    first = client.get("/api/v1/tokens", params={"limit": 2}, headers=auth(token)).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = client.get(
        "/api/v1/tokens", params={"limit": 2, "cursor": first["next_cursor"]}, headers=auth(token)
    ).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    names = [t["name"] for t in first["items"] + rest["items"]]
    assert sorted(names) == ["extra-0", "extra-1", "test"]
    spec = client.get("/api/v1/openapi.json").json()
    for path, operations in spec["paths"].items():
        get = operations.get("get")
        single = (
            path.endswith(
                (
                    "/verify",
                    "/me",
                    "/owner",
                    "/deps",
                    "/export",
                    "/analytics",
                    "/history",
                    # one document: the Prometheus rule file, the release policy of one
                    # entity, an SLO's status
                    "/rules",
                    "/release-policy",
                    "/status",
                    # a schedule's final schedule over a bounded range; the alert report
                    "/final",
                    "/report",
                )
            )
            or path.endswith(".csv")
            or "{" in path.rsplit("/", 1)[-1]
            # the declared event types: a fixed catalogue, one entry per type the code declares
            or path == "/api/v1/events/types"
            # one reference resolved; a picker's type-ahead: at most 10 closest matches
            or path in ("/api/v1/catalog/resolve", "/api/v1/catalog/suggest")
        )
        if not get or single:
            continue
        params = {p["name"] for p in get.get("parameters", [])}
        assert "limit" in params, f"GET {path} is a list without a limit"
        assert "cursor" in params or "after" in params, f"GET {path} has no cursor"
