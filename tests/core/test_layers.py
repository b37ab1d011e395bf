"""The layers of DESIGN.md hold: core knows no domain, a domain imports only the domains below it,
templates stay in their domain's folder, and a higher domain adds to the entity page by a panel."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import markupsafe
from fastapi.testclient import TestClient

from lamplighter.core.db import Database
from lamplighter.core.webui import ENTITY_PANELS, TEMPLATES_DIR, entity_panel
from tests.catalog.conftest import make_entity
from tests.conftest import make_team
from tests.helpers import person, sign_in

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_REFERENCE = re.compile(r"""\{%-?\s*(?:import|include|from|extends)\s+["']([^"']+)["']""")


def test_the_import_contracts_hold() -> None:
    """The contracts of [tool.importlinter] in pyproject.toml, as `make check` runs them."""
    lint = Path(sys.executable).with_name("lint-imports")
    found = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert found.returncode == 0, found.stdout + found.stderr
    assert "0 broken" in found.stdout
    assert found.stdout.count(" KEPT") >= 3, "a contract went missing from pyproject.toml"


def test_templates_import_only_their_own_folder_and_the_shared_macros() -> None:
    crossing = []
    for template in sorted(TEMPLATES_DIR.glob("*/*.html")):
        folder = template.parent.name
        for name in TEMPLATE_REFERENCE.findall(template.read_text()):
            if "/" in name and name.split("/")[0] not in {folder, "core"}:
                crossing.append(f"{folder}/{template.name} -> {name}")
    assert crossing == [], "shared macros belong in macros.html or templates/core/"


def test_the_entity_page_shows_every_panel_a_domain_registered(
    client: TestClient, db: Database
) -> None:
    lead = person(db, email="lin@example.com")
    make_team(db, slug="payments", lead=lead)
    make_entity(db, "ledger", "payments")

    def owners_note(request: Any, session: Any, entity: Any, viewer: Any) -> markupsafe.Markup:
        return markupsafe.Markup('<section id="throwaway">{} seen by {}</section>').format(
            entity.ref, viewer.user.email
        )

    def nothing_to_say(request: Any, session: Any, entity: Any, viewer: Any) -> None:
        return None

    sign_in(client, lead)
    entity_panel(owners_note)
    entity_panel(nothing_to_say)
    try:
        page = client.get("/catalog/service/default/ledger")
    finally:
        ENTITY_PANELS.remove(owners_note)
        ENTITY_PANELS.remove(nothing_to_say)
    assert page.status_code == 200
    assert (
        '<section id="throwaway">service:default/ledger seen by lin@example.com</section>'
        in page.text
    )
    # Self-service's panel, registered from selfservice/pages.py: the catalog does not import it.
    assert '<section class="card" id="access"' in page.text
    assert "No one has been granted access to ledger through Lamplighter yet." in page.text
    assert page.text.index('id="access"') < page.text.index('id="throwaway"'), "in order"

    again = client.get("/catalog/service/default/ledger")
    assert 'id="throwaway"' not in again.text and 'id="access"' in again.text
