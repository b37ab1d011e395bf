from typing import Any

import markupsafe
from fastapi import Request

from lamplighter import domains
from lamplighter.core.webui import Viewer
from tests.fixture_domain import service


def sightings_panel(
    request: Request, session: Any, entity: Any, viewer: Viewer
) -> markupsafe.Markup | None:
    seen = len(service.sightings(session=session, ref=entity.ref))
    title = domains.settings_of("fixture").panel_title
    return markupsafe.Markup(
        '<section class="panel" id="fixture-sightings"><h2>{}</h2>'
        "<p>The fixture domain saw {} arrive {} time(s).</p></section>"
    ).format(title, entity.ref, seen)
