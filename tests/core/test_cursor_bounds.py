"""A forged cursor with an id beyond any column is refused as one this server did not issue
(it reached the database driver and became a 500 on SQLite)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.conftest import make_user
from tests.helpers import PASSWORD, sign_in


def _cursor(after: Any) -> str:
    text = json.dumps({"after": after}).encode()  # orjson cannot write what a forger can
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


@pytest.mark.parametrize("after", [2**63, 2**64 + 5, 10**30, True, -1])
def test_a_cursor_beyond_every_id_is_a_422_naming_it(client: Any, db: Any, after: Any) -> None:
    sign_in(client, make_user(db, password=PASSWORD))
    for path in ("/api/v1/catalog/entities", "/api/v1/tickets", "/api/v1/audit"):
        response = client.get(path, params={"cursor": _cursor(after)})
        assert response.status_code == 422, (path, response.text)
        assert response.json()["errors"][0]["field"] == "query.cursor"
