"""Bad input gets an RFC 9457 problem document naming the field and the reason, and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from lamplighter.core.models import AuditEntry, Team
from tests.conftest import auth, make_token, make_user

PROBLEM = "application/problem+json"


@pytest.fixture
def admin_headers(db: Any) -> dict[str, str]:
    return auth(make_token(db, make_user(db, role="admin")))


def _counts(db: Any) -> tuple[int, int]:
    with db.sessionmaker() as session:
        return (
            int(session.scalar(sa.select(sa.func.count()).select_from(Team)) or 0),
            int(session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) or 0),
        )


def _assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("/problems/")
    assert body["title"] and body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    return dict(body)


def test_malformed_json_is_400_and_changes_nothing(
    client: Any, db: Any, admin_headers: dict[str, str]
) -> None:
    before = _counts(db)
    response = client.post(
        "/api/v1/teams",
        content=b'{"slug": "x", ',
        headers=admin_headers | {"content-type": "application/json"},
    )
    body = _assert_problem(response, 400)
    assert body["type"] == "/problems/malformed-json"
    assert body["errors"][0]["field"] == "body"
    assert _counts(db) == before


def test_wrong_types_name_each_field(client: Any, db: Any, admin_headers: dict[str, str]) -> None:
    before = _counts(db)
    response = client.post(
        "/api/v1/teams",
        json={"slug": 12, "name": ["x"], "lead_email": "not-an-email"},
        headers=admin_headers,
    )
    body = _assert_problem(response, 422)
    fields = {e["field"] for e in body["errors"]}
    assert {"body.slug", "body.name", "body.lead_email"} <= fields
    assert all(e["reason"] for e in body["errors"])
    assert {e["pointer"] for e in body["errors"]} >= {"#/slug", "#/name"}
    assert _counts(db) == before


def test_missing_required_field(client: Any, db: Any, admin_headers: dict[str, str]) -> None:
    body = _assert_problem(
        client.post("/api/v1/teams", json={"slug": "ok"}, headers=admin_headers), 422
    )
    reasons = {e["field"]: e["reason"] for e in body["errors"]}
    assert reasons["body.name"] == "required field is missing"


def test_unknown_field_is_rejected(client: Any, db: Any, admin_headers: dict[str, str]) -> None:
    before = _counts(db)
    lead = make_user(db)
    response = client.post(
        "/api/v1/teams",
        json={"slug": "ok", "name": "Ok", "lead_email": lead.email, "colour": "red"},
        headers=admin_headers,
    )
    body = _assert_problem(response, 422)
    assert body["errors"] == [
        {
            "field": "body.colour",
            "pointer": "#/colour",
            "reason": "unknown field; this endpoint does not accept it",
        }
    ]
    assert _counts(db)[0] == before[0]


def test_oversized_body_is_413_by_declared_length(
    client: Any, db: Any, admin_headers: dict[str, str]
) -> None:
    before = _counts(db)
    huge = b'{"slug": "' + b"a" * (1024 * 1024 + 10) + b'"}'
    body = _assert_problem(
        client.post(
            "/api/v1/teams",
            content=huge,
            headers=admin_headers | {"content-type": "application/json"},
        ),
        413,
    )
    assert "1048576" in body["detail"]
    assert _counts(db) == before


def test_oversized_chunked_body_is_413(client: Any, db: Any, admin_headers: dict[str, str]) -> None:
    def chunks() -> Any:
        for _ in range(20):
            yield b"x" * 65536

    response = client.post(
        "/api/v1/teams",
        content=chunks(),
        headers=admin_headers | {"content-type": "application/json"},
    )
    _assert_problem(response, 413)


def test_body_limit_is_configurable(settings: Any, db: Any) -> None:
    from fastapi.testclient import TestClient

    from lamplighter.app import create_app

    small = create_app(settings.model_copy(update={"max_body_bytes": 100}), db=db)
    with TestClient(small) as client:
        token = make_token(db, make_user(db, role="admin"))
        response = client.post(
            "/api/v1/teams",
            json={"slug": "s", "name": "n" * 200, "lead_email": "a@b.co"},
            headers=auth(token),
        )
        _assert_problem(response, 413)


def test_unknown_route_and_wrong_method(
    client: Any, db: Any, admin_headers: dict[str, str]
) -> None:
    body = _assert_problem(client.get("/api/v1/no-such-thing", headers=admin_headers), 404)
    assert "/api/v1/no-such-thing" in body["detail"]
    _assert_problem(client.put("/api/v1/teams", json={}, headers=admin_headers), 405)


def test_domain_errors_are_problems(client: Any, db: Any, admin_headers: dict[str, str]) -> None:
    body = _assert_problem(client.get("/api/v1/teams/nope", headers=admin_headers), 404)
    assert body["type"] == "/problems/not-found"
    lead = make_user(db)
    first = client.post(
        "/api/v1/teams",
        json={"slug": "dup", "name": "Dup", "lead_email": lead.email},
        headers=admin_headers,
    )
    assert first.status_code == 201
    second = client.post(
        "/api/v1/teams",
        json={"slug": "DUP", "name": "Dup", "lead_email": lead.email},
        headers=admin_headers,
    )
    _assert_problem(second, 409)
    bad_tz = client.post(
        "/api/v1/users",
        json={"email": "tz@example.com", "display_name": "T", "time_zone": "Mars/Olympus"},
        headers=admin_headers,
    )
    body = _assert_problem(bad_tz, 422)
    assert body["errors"][0]["field"] == "body.time_zone"


def test_bad_cursor_and_limit(client: Any, db: Any, admin_headers: dict[str, str]) -> None:
    body = _assert_problem(client.get("/api/v1/teams?cursor=garbage!!", headers=admin_headers), 422)
    assert body["errors"][0]["field"] == "query.cursor"
    body = _assert_problem(client.get("/api/v1/teams?limit=501", headers=admin_headers), 422)
    assert body["errors"][0]["field"] == "query.limit"


def test_problem_type_is_documented(client: Any) -> None:
    response = client.get("/problems/validation-failed")
    assert response.status_code == 200
    assert "Validation failed" in response.text


def test_request_id_is_echoed(client: Any, db: Any, admin_headers: dict[str, str]) -> None:
    response = client.get("/api/v1/teams/nope", headers=admin_headers | {"x-request-id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert response.json()["request_id"] == "abc-123"


def test_nul_characters_and_ids_out_of_range_are_refused_by_name(client: Any, db: Any) -> None:
    token = make_token(db, make_user(db, role="admin"))
    query = client.get("/api/v1/catalog/entities?owner=a%00b", headers=auth(token))
    assert query.status_code == 422
    first = query.json()["errors"][0]
    assert (first["field"], first["reason"]) == ("query.owner", "must not contain NUL characters")
    path = client.get("/api/v1/teams/a%00b", headers=auth(token))
    assert path.status_code == 422 and path.json()["errors"][0]["field"] == "path"
    form = client.post(
        "/teams/new",
        content=b"slug=a%00b&name=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 422 and form.json()["errors"][0]["field"] == "body.slug"
    body = client.post(
        "/api/v1/teams",
        json={"slug": "nul", "name": "a\x00b", "lead_email": "x@example.com"},
        headers=auth(token),
    )
    assert body.status_code == 422
    error = body.json()["errors"][0]
    assert (error["field"], error["reason"]) == ("body.name", "must not contain NUL characters")
    huge = client.get("/api/v1/users/99999999999999999999", headers=auth(token))
    assert huge.status_code == 422 and huge.json()["errors"][0]["field"] == "path.user_id"
    beyond_int4 = client.get(f"/api/v1/users/{2**31}", headers=auth(token))
    assert beyond_int4.status_code == 422
    assert client.get(f"/api/v1/users/{2**31 - 1}", headers=auth(token)).status_code == 404
