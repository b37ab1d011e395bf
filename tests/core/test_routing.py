"""Which endpoint answers a request depends on the path, not on the order the routers were
included in, and the prefix index (core/routing.py) answers exactly like FastAPI's scan of
every route: same route, same path parameters, same 404, 405 and trailing-slash redirect."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route

from lamplighter.app import create_app
from lamplighter.core import routing
from lamplighter.core.settings import Settings
from tests.conftest import TEST_SECRET

Outcome = tuple[int, str | None, tuple[Any, ...] | None]
SAMPLE = {"IntegerConvertor": "7", "PathConvertor": "css/app.css"}


@pytest.fixture
def build_app(tmp_path: Path) -> Iterator[Any]:
    """Apps over a database that is never opened: matching a path reads nothing."""

    def build() -> FastAPI:
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'unused.db'}",
            data_dir=tmp_path,
            secret_key=TEST_SECRET,
            templates_sync_on_start=False,
        )
        return create_app(settings, check_migrations=False)

    yield build


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Routes answer with what was chosen instead of running their endpoint."""
    api_handle, route_handle = APIRoute.handle, Route.handle

    async def answer(scope: Any, send: Any, chosen: tuple[Any, ...]) -> None:
        scope["chosen"] = chosen
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def api(self: APIRoute, scope: Any, receive: Any, send: Any) -> None:
        context = scope.get("fastapi", {}).get("effective_route_context")
        if context is None or context.original_route is not self:
            context = self
        if context.methods and scope["method"] not in context.methods:
            await api_handle(self, scope, receive, send)  # the 405, as FastAPI sends it
            return
        endpoint = self.endpoint
        chosen = (
            context.path_format,
            f"{endpoint.__module__}.{endpoint.__qualname__}",
            tuple(sorted(scope.get("path_params", {}).items())),
        )
        await answer(scope, send, chosen)

    async def route(self: Route, scope: Any, receive: Any, send: Any) -> None:
        if self.methods and scope["method"] not in self.methods:
            await route_handle(self, scope, receive, send)
            return
        await answer(scope, send, (self.path_format, self.name, ()))

    async def mount(self: Mount, scope: Any, receive: Any, send: Any) -> None:
        await answer(scope, send, (self.path, "mount", tuple(sorted(scope["path_params"].items()))))

    monkeypatch.setattr(APIRoute, "handle", api)
    monkeypatch.setattr(Route, "handle", route)
    monkeypatch.setattr(Mount, "handle", mount)


def outcome(asgi: Any, method: str, path: str) -> Outcome:
    """Run one request through an ASGI callable (no exception middleware: 404 and 405 are the
    router's own plain responses) and say what answered."""
    scope: dict[str, Any] = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "server": ("testserver", 80),
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
    }
    fast = getattr(asgi, "fast_paths", None)
    found = fast.match(scope) if fast is not None else None
    if found is not None:
        # The fast path (core/fastpath.py) answers before the router: it must pick the route
        # the router would.
        entry, params = found
        endpoint = entry.route.endpoint
        chosen = (
            entry.template,
            f"{endpoint.__module__}.{endpoint.__qualname__}",
            tuple(sorted(params.items())),
        )
        return 200, None, chosen
    started: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.update(message)

    asyncio.run(asgi(scope, receive, send))
    headers = dict(started.get("headers", []))
    location = headers.get(b"location")
    return started["status"], location.decode() if location else None, scope.get("chosen")


def example_path(template: str, convertors: dict[str, Any]) -> str:
    """A concrete path the template matches: 7 for an integer, a word for a string."""
    path = template
    for name, convertor in convertors.items():
        value = SAMPLE.get(type(convertor).__name__, "sample")
        path = re.sub(rf"\{{{name}(:\w+)?\}}", value, path)
    return path


def route_table(app: FastAPI) -> list[tuple[str, str]]:
    """(method, example path) for every route of the app, methods as each route declares them."""
    requests = []
    for leaf in routing.leaves(app.router):
        target: Any = leaf.context if leaf.context is not None else leaf.route
        if leaf.context is not None and leaf.context.starlette_route is not None:
            target = leaf.context.starlette_route
        template = leaf.template
        if template is None:
            continue
        if isinstance(target, Mount):
            requests.append(("GET", f"{template}/app.css"))
            continue
        path = example_path(template, dict(getattr(target, "param_convertors", {})))
        for method in sorted(getattr(target, "methods", None) or {"GET"}):
            requests.append((method, path))
    return sorted(set(requests))


def scan(app: FastAPI) -> Any:
    """FastAPI's own dispatch: every route tried in order."""
    index = app.router.middleware_stack
    assert isinstance(index, routing.RouteIndex)
    return index.fallback


def reordered(app: FastAPI, order: str) -> FastAPI:
    routes = list(app.router.routes)
    if order == "reversed":
        routes.reverse()
    else:
        random.Random(20261206).shuffle(routes)
    app.router.routes[:] = routes
    return app


@pytest.mark.usefixtures("recorded")
@pytest.mark.parametrize("order", ["reversed", "shuffled"])
def test_the_order_routers_are_included_in_does_not_change_which_endpoint_answers(
    build_app: Any, order: str
) -> None:
    app = build_app()
    other = reordered(build_app(), order)
    table = route_table(app)
    assert len(table) > 100
    for method, path in table:
        as_included = outcome(scan(app), method, path)
        assert as_included[0] == 200, (method, path, as_included)
        assert outcome(scan(other), method, path) == as_included, (method, path)
        assert outcome(app, method, path) == as_included, (method, path)
        assert outcome(other, method, path) == as_included, (method, path)


@pytest.mark.usefixtures("recorded")
def test_every_route_answers_its_own_example_path(build_app: Any) -> None:
    app = build_app()
    for leaf in routing.leaves(app.router):
        if isinstance(leaf.target, Mount) or leaf.template is None:
            continue
        target: Any = leaf.route
        if leaf.context is not None:
            target = leaf.context.starlette_route or leaf.context
        path = example_path(leaf.template, dict(target.param_convertors))
        status, _, chosen = outcome(app, sorted(target.methods)[0], path)
        assert status == 200 and chosen is not None and chosen[0] == target.path_format, (
            leaf.template,
            path,
            chosen,
        )


TRICKY = [
    ("GET", "/"),
    ("GET", "/healthz"),
    ("GET", "/healthz/"),
    ("POST", "/healthz"),
    ("GET", "/nope"),
    ("GET", "/api/v1"),
    ("GET", "/api/v1/"),
    ("GET", "/api/v1/nope"),
    ("GET", "/api/v1/teams"),
    ("GET", "/api/v1/teams/"),
    ("DELETE", "/api/v1/teams"),
    ("GET", "/api/v1/tickets/analytics"),
    ("GET", "/api/v1/tickets/analytics/"),
    ("GET", "/api/v1/tickets/7"),
    ("GET", "/api/v1/tickets/7/"),
    ("GET", "/api/v1/tickets/abc"),
    ("GET", "/api/v1/tickets/-1"),
    ("GET", "/api/v1/tickets/99999999999999999999999"),
    ("PUT", "/api/v1/tickets/7"),
    ("GET", "/api/v1/users/1"),
    ("POST", "/api/v1/users/1"),
    ("GET", "/api/v1/catalog/entities/service/default/ledger"),
    ("GET", "/api/v1/catalog/entities/service/default/ledger/"),
    ("GET", "/api/v1/catalog/entities/service/default/ledger/grants"),
    ("GET", "/api/v1/catalog/entities/service/default/ledger/owner"),
    ("GET", "/api/v1/catalog/entities/service/default"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/api/docs"),
    ("GET", "/static/app.css"),
    ("GET", "/static/"),
    ("GET", "/static"),
    ("GET", "/staticx/app.css"),
    ("GET", "/tickets/analytics"),
    ("GET", "/tickets/types"),
    ("GET", "/tickets/7"),
    ("GET", "/tickets/seven"),
    ("GET", "/catalog/service/default/ledger"),
    ("GET", "/catalog/service/default/ledger/edit"),
    ("GET", "/selfservice/runs/7"),
    ("GET", "/problems/not-found"),
    ("GET", "//api/v1/teams"),
    ("GET", "/API/v1/teams"),
    ("GET", "/api/v1/teams/platform"),
    ("GET", "/api/v1/teams/platform/members"),
]


@pytest.mark.usefixtures("recorded")
@pytest.mark.parametrize("method,path", TRICKY)
def test_the_prefix_index_answers_like_the_linear_scan(
    build_app: Any, method: str, path: str
) -> None:
    app = build_app()
    assert outcome(app, method, path) == outcome(scan(app), method, path)


@pytest.mark.usefixtures("recorded")
def test_the_prefix_index_answers_like_the_linear_scan_for_every_route_and_its_neighbours(
    build_app: Any,
) -> None:
    app = build_app()
    for method, path in route_table(app):
        variants = {path, path.rstrip("/") or "/", path + "/", path + "/extra", path[:-1]}
        for variant in variants:
            for verb in {method, "GET", "PATCH"}:
                expected = outcome(scan(app), verb, variant)
                assert outcome(app, verb, variant) == expected, (verb, variant)


@pytest.mark.usefixtures("recorded")
def test_routes_added_after_the_index_was_built_are_found(build_app: Any) -> None:
    app: FastAPI = build_app()
    assert outcome(app, "GET", "/late")[0] == 404

    @app.get("/late")
    async def late() -> dict[str, str]:
        return {}

    status, _, chosen = outcome(app, "GET", "/late")
    assert status == 200 and chosen is not None and chosen[0] == "/late"


@pytest.mark.usefixtures("recorded")
def test_routes_added_to_an_included_router_after_the_index_was_built_are_found(
    build_app: Any,
) -> None:
    app: FastAPI = build_app()
    outer, inner = APIRouter(prefix="/late"), APIRouter(prefix="/inner")

    @outer.get("/x")
    @inner.get("/y")
    async def read() -> dict[str, str]:
        return {}

    outer.include_router(inner)
    app.include_router(outer, prefix="/api/v1")
    assert outcome(app, "POST", "/api/v1/late/x")[0] == 405
    assert outcome(app, "POST", "/api/v1/late/inner/y")[0] == 405

    # Routers the app already reaches change: a stale index would still answer 405.
    @outer.post("/x")
    @inner.post("/y")
    async def write() -> dict[str, str]:
        return {}

    for path in ("/api/v1/late/x", "/api/v1/late/inner/y"):
        status, _, chosen = outcome(app, "POST", path)
        assert status == 200 and chosen is not None and chosen[0] == path


def test_the_routes_a_request_tries_do_not_grow_as_domains_are_added(build_app: Any) -> None:
    """The cost of matching a request stays flat as domains (each under its own prefix) come."""
    app: FastAPI = build_app()
    path = "/api/v1/catalog/entities/service/default/ledger"
    index = app.router.middleware_stack
    assert isinstance(index, routing.RouteIndex)
    before = index.candidates(path)
    for n in range(40):  # forty more domains, a handful of routes each
        router = APIRouter(prefix=f"/api/v1/domain{n}")
        for suffix in ("", "/{item_id:int}", "/{item_id:int}/history", "/settings"):
            router.add_api_route(suffix or "/", lambda: {}, methods=["GET"])
        app.include_router(router)
    routing.index_routes(app)
    after = index.candidates(path)
    assert [leaf.template for leaf in after] == [leaf.template for leaf in before]
    # The catalog's entity routes on that path, not a scan of every route.
    assert len(after) * 20 < len(routing.leaves(app.router))
