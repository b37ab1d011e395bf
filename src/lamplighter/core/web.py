"""The web shell: request context, body limits, metrics, access logs and problem responses."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from lamplighter.core.context import RequestInfo, request_info
from lamplighter.core.errors import FieldError, LamplighterError, ValidationFailed, problem
from lamplighter.core.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = logging.getLogger("lamplighter.http")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
BODY_LIMIT_KEY = "x-max-body-bytes"
CONVERTOR_RE = re.compile(r"\{(\w+):\w+\}")
# Routes whose path carries a secret (an integration key, a feed token): the log names the
# route's template, never the path.
SECRET_PARAM_RE = re.compile(r"\{(key|token)\}")
# A route marked ``openapi_extra={QUIET_LOG_KEY: True}`` (alert ingest, thousands a second)
# logs its successful requests at DEBUG, like reads; the metrics count them.
QUIET_LOG_KEY = "x-quiet-log"


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        content=orjson.dumps(body),
        status_code=int(body["status"]),
        media_type="application/problem+json",
        headers=headers,
    )


def _raw_problem(status: int, slug: str, title: str, detail: str, request_id: str | None) -> bytes:
    return orjson.dumps(
        problem(status=status, slug=slug, title=title, detail=detail, request_id=request_id)
    )


def walk_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield (full path template, route) for every route, looking inside included routers.

    Templates are given without their convertors (``/tickets/{ticket_id}``, as in the OpenAPI
    document), so metric labels and scenario tables do not change when a parameter is typed."""
    for route in routes:
        original = getattr(route, "original_router", None)
        context = getattr(route, "include_context", None)
        if original is not None and context is not None:
            yield from walk_routes(
                list(original.routes), prefix + str(getattr(context, "prefix", ""))
            )
        elif getattr(route, "path", None) is not None:
            yield CONVERTOR_RE.sub(r"{\1}", prefix + str(route.path)), route


BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
QUIET_METHODS = frozenset({"GET", "HEAD"})
SESSIONS_KEY = "lamplighter.sessions"  # sessions opened for the request, closed after it (deps)


class RequestContextMiddleware:
    """Pure ASGI middleware (no per-request task overhead) doing what every request needs:
    a request id, the client address for the audit log, the body-size limit, metrics, a log line,
    and closing the request's database sessions once the response is out.

    The fast path (a GET without a body) allocates little: no header dict, no regex unless a
    request id was sent, and the metric children per (method, route, status) are kept, since
    ``labels()`` builds and locks on every call.
    """

    def __init__(self, app: ASGIApp, *, default_limit: int, fastapi_app: FastAPI) -> None:
        self.app = app
        self.default_limit = default_limit
        self.fastapi_app = fastapi_app
        self._limits: list[tuple[re.Pattern[str], int]] | None = None
        self._templates: dict[int, str] | None = None
        self._metrics: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._quiet: set[int] | None = None

    def _is_quiet(self, scope: Scope) -> bool:
        quiet = self._quiet
        if quiet is None:
            quiet = self._quiet = {
                id(route)
                for _, route in walk_routes(list(self.fastapi_app.routes))
                if (getattr(route, "openapi_extra", None) or {}).get(QUIET_LOG_KEY)
            }
        route = scope.get("route")
        return route is not None and id(route) in quiet

    def _template_for(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            return "unmatched"
        templates = self._templates
        if templates is None:
            templates = self._templates = {
                id(route): path for path, route in walk_routes(list(self.fastapi_app.routes))
            }
        return templates.get(id(route)) or str(getattr(route, "path", "unmatched"))

    def _limit_for(self, scope: Scope) -> int:
        if self._limits is None:
            limits = []
            for path, route in walk_routes(list(self.fastapi_app.routes)):
                extra = getattr(route, "openapi_extra", None) or {}
                if BODY_LIMIT_KEY in extra:
                    limits.append((compile_path(path)[0], int(extra[BODY_LIMIT_KEY])))
            self._limits = limits
        for pattern, limit in self._limits:
            if pattern.match(scope["path"]):
                return limit
        return self.default_limit

    def _observe(self, method: str, template: str, status: int, elapsed: float) -> None:
        key = (method, template, status)
        children = self._metrics.get(key)
        if children is None:
            children = self._metrics[key] = (
                HTTP_REQUESTS.labels(method=method, route=template, status=str(status)),
                HTTP_LATENCY.labels(method=method, route=template),
            )
        children[0].inc()
        children[1].observe(elapsed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        request_id = given if given and REQUEST_ID_RE.match(given) else uuid.uuid4().hex
        request_id_header = (b"x-request-id", request_id.encode())
        client = scope.get("client")
        token = request_info.set(
            RequestInfo(request_id=request_id, client_addr=client[0] if client else None)
        )
        sessions: list[Any] = []
        scope[SESSIONS_KEY] = sessions
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), request_id_header]
            await send(message)

        method = scope["method"]
        try:
            if "\x00" in scope["path"] or b"%00" in scope["query_string"]:
                await self._refuse_nul(scope, send_wrapper, request_id)
                return
            if method in BODY_METHODS:
                limited = await self._limited_receive(
                    scope, dict(scope["headers"]), receive, send_wrapper, request_id
                )
                if limited is None:
                    return
                receive = limited
            await self.app(scope, receive, send_wrapper)
        finally:
            for session in sessions:
                try:
                    session.close()  # returns the connection to the pool: microseconds
                except Exception as exc:  # a connection lost mid-request fails its rollback
                    if not database_unavailable(exc):
                        raise
                    log.warning("session close failed", extra={"error": str(exc)[:300]})
            elapsed = time.perf_counter() - started
            template = self._template_for(scope)
            self._observe(method, template, status, elapsed)
            # Changes and failures are logged at INFO; successful reads at DEBUG, since at
            # thousands a second they would drown the log (the metrics count them).
            quiet = method in QUIET_METHODS or self._is_quiet(scope)
            level = logging.DEBUG if quiet and status < 400 else logging.INFO
            if log.isEnabledFor(level):
                log.log(
                    level,
                    "request",
                    extra={
                        "method": method,
                        "path": template if SECRET_PARAM_RE.search(template) else scope["path"],
                        "route": template,
                        "status": status,
                        "request_id": request_id,
                        "ms": round(elapsed * 1000, 2),
                        "client": client[0] if client else None,
                    },
                )
            request_info.reset(token)

    async def _limited_receive(
        self,
        scope: Scope,
        headers: dict[bytes, bytes],
        receive: Receive,
        send: Send,
        request_id: str,
    ) -> Receive | None:
        limit = self._limit_for(scope)
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(send, limit, request_id)
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                await self._reject(send, limit, request_id)
                return None
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole = b"".join(chunks)
        form = headers.get(b"content-type", b"").startswith(b"application/x-www-form-urlencoded")
        if form and b"%00" in whole:
            await self._refuse_nul(scope, send, request_id, form=whole)
            return None
        replay = {"type": "http.request", "body": whole, "more_body": False}
        sent = False

        async def replay_receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return replay
            return await receive()

        return replay_receive

    async def _refuse_nul(
        self, scope: Scope, send: Send, request_id: str, *, form: bytes | None = None
    ) -> None:
        """A NUL character in the path, the query or a form: no name or value has one, and
        PostgreSQL refuses it in text (it was a 500 on every route that reads a string)."""
        where = "path"
        if form is not None or "\x00" not in scope["path"]:
            prefix, raw = ("body", form) if form is not None else ("query", scope["query_string"])
            pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
            names = [name for name, value in pairs if "\x00" in name + value]
            where = f"{prefix}.{names[0]}" if names else prefix
        document = problem(
            status=422,
            slug=ValidationFailed.slug,
            title=ValidationFailed.title,
            detail=f"{where}: must not contain NUL characters",
            errors=[FieldError(where, "must not contain NUL characters")],
            request_id=request_id,
        )
        body = orjson.dumps(document)
        await send(
            {
                "type": "http.response.start",
                "status": 422,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _reject(self, send: Send, limit: int, request_id: str) -> None:
        body = _raw_problem(
            413,
            "payload-too-large",
            "Payload too large",
            f"request bodies on this route are limited to {limit} bytes",
            request_id,
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _wants_html(request: Request) -> bool:
    """Browsers get HTML error pages everywhere but the API and the operations endpoints."""
    path = request.url.path
    if path.startswith("/api/") or path in {"/healthz", "/readyz", "/metrics"}:
        return False
    accept = request.headers.get("accept", "")
    return "json" not in accept or request.headers.get("hx-request") == "true"


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


# What the database being down or unreachable looks like, whichever layer raised it: the pool
# (checkout, connect, timeout), SQLAlchemy's wrappers, or the driver itself (a raw connection).
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
)
try:
    import psycopg

    _UNAVAILABLE += (psycopg.OperationalError, psycopg.InterfaceError)
except ImportError:  # pragma: no cover - SQLite-only installs
    pass


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database cannot be reached, as opposed to a
    bad statement: answered 503 with Retry-After, not 500."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, _UNAVAILABLE):
            return True
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def problem_for(
    exc: LamplighterError, *, api: bool
) -> tuple[dict[str, Any], dict[str, str] | None]:
    """The problem document and headers for a domain error: an API 401 names the bearer scheme,
    a 429 or 503 says when to come back."""
    headers = (
        {"WWW-Authenticate": 'Bearer realm="lamplighter"'} if api and exc.status == 401 else None
    )
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers = {**(headers or {}), "Retry-After": str(int(retry_after))}
    body = problem(
        status=exc.status, slug=exc.slug, title=exc.title, detail=exc.detail, errors=exc.errors
    )
    return body, headers


def unavailable_problem() -> dict[str, Any]:
    return problem(
        status=503,
        slug="database-unavailable",
        title="Database unavailable",
        detail="the database cannot be reached (a restart, a failover or an outage); "
        "try again shortly: the next request uses a new connection",
    )


def internal_problem() -> dict[str, Any]:
    return problem(
        status=500,
        slug="internal-error",
        title="Internal error",
        detail="something went wrong on our side; the request id helps us find it",
    )


def install_error_handlers(
    app: FastAPI, render_error_page: Callable[[Request, dict[str, Any]], Response] | None = None
) -> None:
    def respond(
        request: Request, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> Response:
        body.setdefault("request_id", request_info.get().request_id)
        body.setdefault("instance", request.url.path)
        if render_error_page is not None and _wants_html(request):
            page = render_error_page(request, body)
            page.headers.update(headers or {})
            return page
        return problem_response(body, headers)

    @app.exception_handler(LamplighterError)
    async def domain_error(request: Request, exc: LamplighterError) -> Response:
        body, headers = problem_for(exc, api=request.url.path.startswith("/api/"))
        return respond(request, body, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            first = next(e for e in errors if e.get("type") == "json_invalid")
            reason = (first.get("ctx") or {}).get("error") or first.get("msg", "invalid JSON")
            return respond(
                request,
                problem(
                    status=400,
                    slug="malformed-json",
                    title="Malformed JSON",
                    detail=f"the request body is not valid JSON: {reason}",
                    errors=[FieldError("body", f"not valid JSON: {reason}")],
                ),
            )
        field_errors = []
        for error in errors:
            loc = list(error.get("loc", ()))
            message = str(error.get("msg", "invalid"))
            if error.get("type") == "extra_forbidden":
                message = "unknown field; this endpoint does not accept it"
            elif error.get("type") == "missing":
                message = "required field is missing"
            field_errors.append(FieldError(_location(loc), message))
        detail = "; ".join(f"{e.field}: {e.reason}" for e in field_errors[:5])
        return respond(
            request,
            problem(
                status=422,
                slug="validation-failed",
                title="Validation failed",
                detail=detail,
                errors=field_errors,
            ),
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        slug = {
            404: "not-found",
            405: "method-not-allowed",
            415: "unsupported-media-type",
            401: "unauthorized",
            403: "forbidden",
        }.get(exc.status_code, "http-error")
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        detail = str(exc.detail) if exc.detail else title
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"nothing at {request.method} {request.url.path}"
        return respond(
            request,
            problem(status=exc.status_code, slug=slug, title=title, detail=detail),
            dict(exc.headers or {}) or None,
        )

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: DBAPIError) -> Response:
        if isinstance(exc, IntegrityError):
            return await integrity_error(request, exc)
        if not database_unavailable(exc):
            return await unexpected(request, exc)
        return unavailable(request, exc)

    def unavailable(request: Request, exc: BaseException) -> Response:
        log.warning("database unavailable", extra={"error": str(exc)[:300]})
        return respond(request, unavailable_problem(), {"Retry-After": "1"})

    async def integrity_error(request: Request, exc: IntegrityError) -> Response:
        log.warning("integrity error", extra={"error": str(exc.orig)[:300]})
        return respond(
            request,
            problem(
                status=409,
                slug="conflict",
                title="Conflict",
                detail="the change conflicts with existing data (a duplicate or a missing reference)",
            ),
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        if database_unavailable(exc):  # the driver's own error, a pool timeout, a failed close
            return unavailable(request, exc)
        log.exception("unhandled error")
        return respond(request, internal_problem())


__all__ = ["HTMLResponse", "install_error_handlers", "problem_response"]
