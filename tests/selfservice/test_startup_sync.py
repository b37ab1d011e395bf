"""The web app brings the shipped golden paths and LAMPLIGHTER_TEMPLATES_DIR in when it starts."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from lamplighter.app import create_app
from lamplighter.core.db import Database
from lamplighter.core.models import AuditEntry
from lamplighter.core.settings import Settings
from lamplighter.selfservice.golden import GOLDEN_DIR
from tests.conftest import auth, make_team, make_token, make_user


def _names(client: TestClient, headers: dict[str, str]) -> set[str]:
    page = client.get("/api/v1/templates", params={"limit": 100}, headers=headers)
    assert page.status_code == 200, page.text
    return {t["name"] for t in page.json()["items"]}


def _audit_count(db: Database) -> int:
    with db.sessionmaker() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) or 0)


def test_golden_paths_and_the_templates_dir_are_there_after_start_and_a_restart_changes_nothing(
    db: Database, settings: Settings, tmp_path: Path, caplog: Any
) -> None:
    lead = make_user(db, email="lead@example.com", role="sre")
    make_team(db, slug="platform", lead=lead)
    headers = auth(make_token(db, lead))
    mine = tmp_path / "templates"
    mine.mkdir()
    text = (GOLDEN_DIR / "access.yaml").read_text()
    (mine / "team-access.yaml").write_text(text.replace("name: access\n", "name: team-access\n", 1))
    (mine / "broken.yaml").write_text("name: broken\nsteps: [\n")
    configured = settings.model_copy(
        update={"templates_sync_on_start": True, "templates_dir": mine}
    )

    with (
        caplog.at_level(logging.WARNING, logger="lamplighter"),
        TestClient(create_app(configured, db=db)) as client,
    ):
        names = _names(client, headers)
    assert {"python-web-service", "postgres-database", "access", "team-access"} <= names
    assert "broken" not in names
    assert any("broken.yaml" in record.getMessage() for record in caplog.records)

    before = _audit_count(db)
    with TestClient(create_app(configured, db=db)) as client:
        assert _names(client, headers) == names
    assert _audit_count(db) == before  # unchanged files write nothing


def test_a_fresh_install_without_teams_still_starts(
    db: Database, settings: Settings, caplog: Any
) -> None:
    configured = settings.model_copy(update={"templates_sync_on_start": True})
    with (
        caplog.at_level(logging.WARNING, logger="lamplighter"),
        TestClient(create_app(configured, db=db)) as client,
    ):
        assert client.get("/healthz").status_code == 200
    assert any("no team exists yet" in record.getMessage() for record in caplog.records)
