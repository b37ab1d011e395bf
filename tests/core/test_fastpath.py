"""The fast path (core/fastpath.py): a route served as plain ASGI answers what FastAPI would.

The same router is mounted twice: in a ``LamplighterApp`` with its fast path installed, and in a
plain FastAPI app with the app's error handlers, where the route's FastAPI endpoint serves the
handler. Every case must answer the same status, headers that matter and body (bar the request
id, which differs per request)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from lamplighter.app import LamplighterApp
from lamplighter.core import fastpath
from lamplighter.core.errors import BadRequest, FieldError, TooManyRequests, Unauthorized
from lamplighter.core.fastpath import Call, Reply, json_reply
from lamplighter.core.web import BODY_LIMIT_KEY, RequestContextMiddleware, install_error_handlers


class _Slow(TooManyRequests):
    retry_after = 7


async def _echo(call: Call) -> Reply:
    what = call.path_params["what"]
    if what == "bad":
        raise BadRequest("the body is wrong", errors=[FieldError("body.name", "missing")])
    if what == "who":
        raise Unauthorized("no valid key")
    if what == "slow":
        raise _Slow("too many")
    if what == "boom":
        raise RuntimeError("a bug with a secret in it: hunter2")
    return json_reply(
        {"what": what, "body": call.body.decode(), "agent": call.header(b"x-agent")}, status=202
    )


def _router() -> APIRouter:
    router = APIRouter()

    @router.post("/api/v1/echo/{what}", openapi_extra={BODY_LIMIT_KEY: 64})
    @fastpath.serves(_echo)
    async def echo(request: Request, what: str) -> Response:
        return await fastpath.answer(request, _echo)

    return router


def _app(*, fast: bool) -> FastAPI:
    """The router in an app with the fast path installed, or in a plain FastAPI app."""
    app = LamplighterApp() if fast else FastAPI()
    app.include_router(_router())
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, default_limit=1 << 20, fastapi_app=app)
    if isinstance(app, LamplighterApp):
        app.fast_paths = fastpath.install(app, default_limit=1 << 20)
    return app


@pytest.fixture
def clients() -> Iterator[tuple[TestClient, TestClient]]:
    with (
        TestClient(_app(fast=True), raise_server_exceptions=False) as fast,
        TestClient(_app(fast=False), raise_server_exceptions=False) as plain,
    ):
        yield fast, plain


def _view(response: Any) -> tuple[int, str | None, str | None, str | None, Any]:
    body = response.json()
    if isinstance(body, dict):
        body.pop("request_id", None)
    return (
        response.status_code,
        response.headers.get("content-type"),
        response.headers.get("www-authenticate"),
        response.headers.get("retry-after"),
        body,
    )


@pytest.mark.parametrize("what", ["ok", "bad", "who", "slow", "boom"])
def test_a_fast_route_answers_what_fastapi_answers(
    clients: tuple[TestClient, TestClient], what: str
) -> None:
    fast, plain = clients
    fast_answer = fast.post(f"/api/v1/echo/{what}", content=b"hi", headers={"x-agent": "am"})
    plain_answer = plain.post(f"/api/v1/echo/{what}", content=b"hi", headers={"x-agent": "am"})
    assert _view(fast_answer) == _view(plain_answer)
    assert fast_answer.headers["x-request-id"]
    if what == "ok":
        assert fast_answer.status_code == 202
        assert fast_answer.json() == {"what": "ok", "body": "hi", "agent": "am"}
    if what == "bad":
        assert fast_answer.headers["content-type"] == "application/problem+json"
        assert fast_answer.json()["errors"][0]["field"] == "body.name"
    if what == "boom":  # a bug is a 500 problem, and nothing of it reaches the caller
        assert fast_answer.status_code == 500
        assert "hunter2" not in fast_answer.text


def test_the_fast_path_keeps_the_body_limit_the_request_id_and_the_metrics(
    clients: tuple[TestClient, TestClient],
) -> None:
    fast, _ = clients
    too_big = fast.post("/api/v1/echo/ok", content=b"x" * 65)
    assert too_big.status_code == 413
    assert too_big.headers["content-type"] == "application/problem+json"
    before = REGISTRY.get_sample_value(
        "lamplighter_http_requests_total",
        {"method": "POST", "route": "/api/v1/echo/{what}", "status": "202"},
    )
    answer = fast.post("/api/v1/echo/ok", content=b"x", headers={"x-request-id": "trace-42"})
    assert answer.headers["x-request-id"] == "trace-42"
    after = REGISTRY.get_sample_value(
        "lamplighter_http_requests_total",
        {"method": "POST", "route": "/api/v1/echo/{what}", "status": "202"},
    )
    assert (after or 0) == (before or 0) + 1
    # Other methods and paths go to FastAPI as before.
    assert fast.get("/api/v1/echo/ok").status_code == 405
    assert fast.post("/api/v1/echo").status_code == 404


def test_the_apps_alert_intake_is_served_on_the_fast_path(app: FastAPI) -> None:
    assert isinstance(app, LamplighterApp) and app.fast_paths is not None
    served = {
        (entry.method, entry.route.path_format.split("/")[-1]) for entry in app.fast_paths.entries
    }
    assert ("POST", "enqueue") in served
    assert ("POST", "{key}") in served  # the Alertmanager and generic receivers, the heartbeat
    assert ("GET", "{key}") in served
    scope = {"type": "http", "method": "POST", "path": "/v2/enqueue"}
    assert app.fast_paths.match(scope) is not None
    assert app.fast_paths.match({**scope, "path": "/api/v1/teams"}) is None


def test_a_refused_key_is_not_echoed_in_the_problem(client: TestClient) -> None:
    """The key in an ingest path is a secret: the problem names the route's template."""
    key = "0123456789abcdef0123456789abcdef"
    answer = client.post(f"/api/v1/alerting/ingest/alertmanager/{key}", json={})
    assert answer.status_code == 401
    assert answer.json()["instance"] == "/api/v1/alerting/ingest/alertmanager/{key}"
    assert key not in answer.text
