"""Bad input on every API route, driven by the OpenAPI document: nasty path and query values,
malformed JSON, wrong types, unknown fields and an oversized body. Each answer is below 500, a
refusal is an RFC 9457 problem document, and a refused request writes nothing. The caller is an
admin, so input gets past authorization to the validation (tests/core/test_authz_matrix.py
covers who may call what)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from lamplighter.core.models import AuditEntry
from tests.catalog.conftest import make_entity
from tests.conftest import auth, make_team, make_token, make_user

METHODS = ("get", "post", "put", "patch", "delete")
NASTY_INTEGERS = ["0", "-1", "99999999999999999999999", "abc", "1.5"]
NASTY_STRINGS = ["x", "a" * 300, "%00", "..", "ü-é", "' OR 1=1--", "group:default%2Fteam"]
WRONG_VALUES: dict[str, Any] = {
    "string": {"an": "object"},
    "integer": "not a number",
    "number": [1, 2],
    "boolean": {"no": "bool"},
    "array": "not a list",
    "object": ["not", "an", "object"],
}


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    for key in ("anyOf", "allOf", "oneOf"):
        if key in schema:  # take the first typed alternative (Optional[X] → X)
            typed = [_resolve(spec, s) for s in schema[key] if s.get("type") != "null"]
            if typed:
                return typed[0]
    return schema


def _type_of(spec: dict[str, Any], schema: dict[str, Any]) -> str:
    return str(_resolve(spec, schema).get("type", "string"))


def _audit_count(db: Any) -> int:
    with db.sessionmaker() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) or 0)


def _requests(spec: dict[str, Any], method: str, path: str, operation: dict[str, Any]) -> Any:
    """(method, url, content, description) of the bad requests for one operation."""
    parameters = operation.get("parameters", [])
    path_params = [p for p in parameters if p["in"] == "path"]
    query_params = [p for p in parameters if p["in"] == "query"]

    def fill(overrides: dict[str, str]) -> str:
        url = path
        for parameter in path_params:
            kind = _type_of(spec, parameter.get("schema", {}))
            value = overrides.get(parameter["name"], "1" if kind == "integer" else "x")
            url = url.replace("{" + parameter["name"] + "}", value)
        return url

    for parameter in path_params:
        kind = _type_of(spec, parameter.get("schema", {}))
        for value in NASTY_INTEGERS if kind == "integer" else NASTY_STRINGS:
            yield (
                method,
                fill({parameter["name"]: value}),
                None,
                f"path {parameter['name']}={value!r}",
            )
    base = fill({})
    for parameter in query_params:
        kind = _type_of(spec, parameter.get("schema", {}))
        values = NASTY_INTEGERS if kind in {"integer", "number"} else NASTY_STRINGS[:4]
        if kind == "boolean":
            values = ["maybe", "2"]
        for value in [*values, "a" * 5000]:
            yield method, f"{base}?{parameter['name']}={value}", None, f"query {parameter['name']}"
    if "requestBody" not in operation:
        return
    content = operation["requestBody"].get("content", {})
    if "application/json" not in content:
        return
    schema = _resolve(spec, content["application/json"].get("schema", {}))
    for raw, what in (
        (b"{", "malformed JSON"),
        (b"[]", "a list"),
        (b"null", "null"),
        (b'{"surely_not_a_field": 1}', "an unknown field"),
        (b'{"a": "' + b"x" * (2 * 1024 * 1024) + b'"}', "a body over the limit"),
    ):
        yield method, base, raw, what
    for name, prop in schema.get("properties", {}).items():
        kind = _type_of(spec, prop)
        yield method, base, {name: WRONG_VALUES[kind]}, f"body.{name} of the wrong type"
        if kind == "string":
            yield method, base, {name: "nul\x00inside"}, f"body.{name} with a NUL character"


def test_bad_input_on_every_route_is_a_problem_and_changes_nothing(
    app: Any, client: Any, db: Any
) -> None:
    admin = make_user(db, role="admin")
    make_team(db, slug="payments", lead=admin)
    make_entity(db, "ledger", "payments")
    token = make_token(db, admin)
    spec = client.get("/api/v1/openapi.json", headers=auth(token)).json()
    operations = [
        (method, path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS and path.startswith("/api/v1/")
    ]
    assert len(operations) > 60, "the OpenAPI document lists fewer routes than expected"
    sent = 0
    for method, path, operation in operations:
        for verb, url, body, what in _requests(spec, method, path, operation):
            before = _audit_count(db)
            headers = auth(token) | {"Content-Type": "application/json"}
            if isinstance(body, bytes):
                response = client.request(verb.upper(), url, content=body, headers=headers)
            else:
                response = client.request(verb.upper(), url, json=body, headers=headers)
            sent += 1
            where = f"{verb.upper()} {path} with {what}"
            assert response.status_code < 500, f"{where}: {response.status_code} {response.text}"
            if response.status_code >= 400:
                assert response.headers["content-type"].startswith("application/problem+json"), (
                    where
                )
                problem = response.json()
                assert problem["status"] == response.status_code, where
                assert _audit_count(db) == before, f"{where} was refused but wrote"
    assert sent > 1000
