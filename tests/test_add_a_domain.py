"""Adding a domain is adding a package and naming its manifest: ``tests/fixture_domain`` has one
model (its own migration branch), one API route, one panel on the entity page, one CLI command
and one subscription to ``catalog.entity_created``; nothing outside the package mentions it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lamplighter import domains
from lamplighter.app import create_app
from lamplighter.core import migrate
from lamplighter.core.db import Database
from lamplighter.core.settings import Settings
from tests.conftest import TEST_SECRET, make_team, make_user
from tests.fixture_domain import manifest as fixture_manifest
from tests.helpers import PASSWORD, drain, sign_in, text

REPO = Path(__file__).resolve().parent.parent
PLUGIN = "tests.fixture_domain"


@pytest.fixture
def with_fixture_domain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Settings, Database]]:
    """A fresh SQLite database with the fixture domain on; the domain is forgotten afterwards."""
    monkeypatch.setenv("LAMPLIGHTER_FIXTURE_PANEL_TITLE", "Arrivals seen")
    settings = Settings(
        data_dir=tmp_path,
        secret_key=TEST_SECRET,
        plugins=PLUGIN,
        templates_sync_on_start=False,
        job_poll_s=0.05,
    )
    domains.load(settings)
    migrate.upgrade(settings.effective_database_url)
    database = Database(settings.effective_database_url)
    try:
        yield settings, database
    finally:
        database.dispose()
        domains.unload(fixture_manifest)


def test_a_new_domain_plugs_in_through_its_manifest_alone(
    with_fixture_domain: tuple[Settings, Database], tmp_path: Path
) -> None:
    settings, database = with_fixture_domain
    # Its migration ran as a branch of its own beside the built-in one.
    assert "+" in (migrate.current_revision(database.engine) or "")
    migrate.check_current(database.engine)

    admin = make_user(database, email="ada@example.com", role="admin", password=PASSWORD)
    make_team(database, slug="payments", lead=admin)
    app = create_app(settings, db=database)
    with TestClient(app, base_url="http://testserver") as client:
        csrf = sign_in(client, admin)
        created = client.post(
            "/api/v1/catalog/entities",
            json={"kind": "service", "name": "ledger", "owner": "payments"},
            headers={"X-CSRF-Token": csrf},
        )
        assert created.status_code == 201, created.text

        # The subscription: one job per matching event, in the event's transaction.
        types = {t["type"]: t for t in client.get("/api/v1/events/types").json()}
        assert "fixture.sighting" in types["catalog.entity_created"]["subscribers"]
        assert client.get("/api/v1/fixture/sightings").json() == {"refs": []}
        drain(database, settings)
        assert client.get("/api/v1/fixture/sightings").json() == {
            "refs": ["service:default/ledger"]
        }
        drain(database, settings)  # nothing new: the reaction ran once for the one event
        assert client.get("/api/v1/fixture/sightings").json() == {
            "refs": ["service:default/ledger"]
        }

        # Its panel, on the catalog's entity page.
        page = client.get("/catalog/service/default/ledger")
        assert page.status_code == 200
        shown = text(page)
        # The panel, titled by the domain's own setting (LAMPLIGHTER_FIXTURE_PANEL_TITLE).
        assert (
            "Arrivals seen The fixture domain saw service:default/ledger arrive 1 time(s)." in shown
        )

    # Its CLI command, in a fresh process that knows the domain only from LAMPLIGHTER_PLUGINS.
    env = os.environ | {
        "LAMPLIGHTER_DATA_DIR": str(tmp_path),
        "LAMPLIGHTER_SECRET_KEY": TEST_SECRET,
        "LAMPLIGHTER_PLUGINS": PLUGIN,
        "PYTHONPATH": str(REPO),
    }
    env.pop("LAMPLIGHTER_DATABASE_URL", None)
    cli = [str(Path(sys.executable).parent / "lamplighter")]
    listed = subprocess.run([*cli, "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert "fixture" in listed.stdout
    counted = subprocess.run(
        [*cli, "fixture", "count"], env=env, capture_output=True, text=True, timeout=60
    )
    assert counted.returncode == 0, counted.stderr
    assert counted.stdout.strip() == "1"


def test_without_the_plugin_the_domain_is_nowhere(client: TestClient, db: Database) -> None:
    # The suite's own app, after the test above forgot the domain: no route, no subscriber.
    admin = make_user(db, role="admin", password=PASSWORD)
    sign_in(client, admin)
    assert client.get("/api/v1/fixture/sightings").status_code == 404
    types = {t["type"]: t for t in client.get("/api/v1/events/types").json()}
    assert "fixture.sighting" not in types["catalog.entity_created"]["subscribers"]
