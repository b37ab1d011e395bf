"""The fast path: a few hot endpoints served as plain ASGI, beside FastAPI.

Alert intake takes thousands of requests a second on one process. Through FastAPI each request
pays for the middleware stack, the router, a ``Request``, dependency solving and a ``Response``
object: measured, about three quarters of the event loop's time on a one-alert request, more
than parsing, authenticating and committing the alert. An endpoint that needs none of that
(it authenticates by a key in its path or body, reads bytes and answers bytes) is written as a
*handler* — ``async (Call) -> Reply`` — and declared on an ordinary FastAPI route, which still
documents it in the OpenAPI document and serves it when the app is used without the fast path::

    async def _ping(call: fastpath.Call) -> fastpath.Reply: ...

    @router.post("/things/{key}/ping", openapi_extra=...)
    @fastpath.serves(_ping)
    async def ping(request: Request, key: str) -> Response:
        return await fastpath.answer(request, _ping)

:class:`FastPaths` (installed by ``create_app``) finds such routes, and a request for one goes
from the app straight to :class:`~lamplighter.core.web.RequestContextMiddleware` (request id,
body limit, metrics, log) and the handler: nothing else runs. A handler raises the usual
:class:`~lamplighter.core.errors.LamplighterError` subclasses; they become the same problem
documents the app's error handlers give (``web.problem_for``). ``tests/core/test_fastpath.py``
checks both ways of serving a route against each other.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.routing import compile_path

from lamplighter.core.context import request_info
from lamplighter.core.errors import LamplighterError
from lamplighter.core.web import (
    SECRET_PARAM_RE,
    Message,
    Receive,
    RequestContextMiddleware,
    Scope,
    Send,
    database_unavailable,
    internal_problem,
    problem_for,
    unavailable_problem,
    walk_routes,
)

log = logging.getLogger("lamplighter.http")
FAST_ATTR = "__lamplighter_fast__"
JSON = "application/json"
PROBLEM_JSON = "application/problem+json"


@dataclass(slots=True)
class Call:
    """What a handler is given: the app (its ``state``), the path parameters, the raw headers
    (lower-case names, as ASGI gives them) and the whole body, already bounded by the route's
    body limit."""

    app: Any
    path_params: dict[str, str]
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] | None = None
    media_type: str = JSON


def json_reply(
    body: dict[str, Any], status: int = 202, headers: dict[str, str] | None = None
) -> Reply:
    return Reply(status, orjson.dumps(body), headers)


Handler = Callable[[Call], Awaitable[Reply]]


F = TypeVar("F", bound=Callable[..., Any])


def serves(handler: Handler) -> Callable[[F], F]:
    """Mark a FastAPI endpoint as served by ``handler`` on the fast path."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, FAST_ATTR, handler)
        return endpoint

    return mark


async def answer(request: Request, handler: Handler) -> Response:
    """Serve ``handler`` from inside FastAPI (the app without its fast path). Errors propagate to
    the app's error handlers, which answer what :func:`problem_for` would."""
    call = Call(request.app, dict(request.path_params), request.scope["headers"], b"")
    call.body = await request.body()
    reply = await handler(call)
    return Response(
        reply.body, status_code=reply.status, headers=reply.headers, media_type=reply.media_type
    )


@dataclass(frozen=True, slots=True)
class _Entry:
    method: str
    template: str  # the full path template (/api/v1/…)
    prefix: str  # the template's leading literal part: a cheap first test
    pattern: re.Pattern[str]
    route: Any
    handler: Handler


class FastPaths:
    """The app's fast routes and the ASGI app that serves them (see the module's text)."""

    def __init__(self, app: FastAPI, *, default_limit: int) -> None:
        entries = []
        for template, route in walk_routes(list(app.routes)):
            handler = getattr(getattr(route, "endpoint", None), FAST_ATTR, None)
            if handler is None:
                continue
            pattern = compile_path(template)[0]
            prefix = template.split("{", 1)[0]
            for method in sorted(getattr(route, "methods", None) or ()):
                entries.append(_Entry(method, template, prefix, pattern, route, handler))
        self.entries = tuple(entries)
        self.app = app
        self.stack = RequestContextMiddleware(
            self._serve, default_limit=default_limit, fastapi_app=app
        )

    def match(self, scope: Scope) -> tuple[_Entry, dict[str, str]] | None:
        path: str = scope["path"]
        method: str = scope["method"]
        for entry in self.entries:
            if entry.method != method or not path.startswith(entry.prefix):
                continue
            found = entry.pattern.match(path)
            if found is not None:
                return entry, found.groupdict()
        return None

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, entry: _Entry, params: dict[str, str]
    ) -> None:
        scope["app"] = self.app
        scope["route"] = entry.route
        scope["path_params"] = params
        scope["lamplighter.fast"] = entry.handler
        scope["lamplighter.template"] = entry.template
        await self.stack(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks = []
        while True:
            message: Message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        call = Call(self.app, scope["path_params"], scope["headers"], b"".join(chunks))
        try:
            reply = await scope["lamplighter.fast"](call)
        except LamplighterError as exc:
            body, extra = problem_for(exc, api=True)
            reply = _problem(scope, body, extra)
        except Exception as exc:
            reply = _unexpected(scope, exc)
        headers: list[tuple[bytes, bytes]] = [
            (b"content-type", reply.media_type.encode()),
            (b"content-length", str(len(reply.body)).encode()),
        ]
        if reply.headers:
            headers.extend((k.lower().encode(), v.encode()) for k, v in reply.headers.items())
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})


def _problem(scope: Scope, body: dict[str, Any], headers: dict[str, str] | None) -> Reply:
    body.setdefault("request_id", request_info.get().request_id)
    # A path carrying a secret (an integration key) is named by its template, as in the log.
    template = scope.get("lamplighter.template", "")
    body.setdefault("instance", template if SECRET_PARAM_RE.search(template) else scope["path"])
    return Reply(int(body["status"]), orjson.dumps(body), headers, PROBLEM_JSON)


def _unexpected(scope: Scope, exc: Exception) -> Reply:
    if database_unavailable(exc):
        log.warning("database unavailable", extra={"error": str(exc)[:300]})
        return _problem(scope, unavailable_problem(), {"Retry-After": "1"})
    log.exception("unhandled error")
    return _problem(scope, internal_problem(), None)


def install(app: FastAPI, *, default_limit: int) -> FastPaths | None:
    """Build the app's fast path table (after every router is included); None when no route
    has a handler."""
    paths = FastPaths(app, default_limit=default_limit)
    return paths if paths.entries else None
