"""The OpenAPI document as the API behaves: every problem response a route can give, in one place.

FastAPI documents a route's success response and a 422 in its own shape; every refusal of ours is
an RFC 9457 problem document (``core/errors.py``, ``core/web.py``) whose status depends on what the
route takes. Rather than repeat ``responses=`` on seventy routes, ``install`` derives them from the
route itself when the document is built:

=====  ===================================================  ==================================
code   when                                                 raised by
=====  ===================================================  ==================================
400    the route takes a body (malformed JSON)              the validation handler
401    the route needs a caller                             ``deps.current_actor``
403    the route needs a caller (role, ownership, CSRF)     services' ``require_*`` guards
404    the route takes input (an id, a slug, a reference)   services' ``get``
409    the route writes (POST, PUT, PATCH, DELETE)          duplicates, stale state, integrity
413    the route takes a body                               the body limit in the middleware
415    the route takes a body (another content type)        the request middleware
422    the route takes input                                validation, services' field errors
503    every route (the database is away)                   the database error handler
=====  ===================================================  ==================================

A route that can give another problem (a 429, say) lists it in its own ``responses=``, which is
kept and given the problem media type. ``tests/core/test_schemathesis.py`` holds the document to
what the app answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from lamplighter.core.deps import current_actor
from lamplighter.core.web import walk_routes

PROBLEM_MEDIA_TYPE = "application/problem+json"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DESCRIPTIONS = {
    400: "Malformed request (e.g. the body is not valid JSON)",
    401: "No or bad credentials: sign in or send a bearer token",
    403: "Signed in, but not allowed",
    404: "Not found",
    409: "Conflicts with the current state (a duplicate, a stale change)",
    413: "The request body is too large",
    415: "The request body is not in a media type this route takes",
    422: "Input that is wrong: ``errors[]`` names each field",
    429: "Too many requests; try again later",
    503: "The database is unavailable; retry after ``Retry-After`` seconds",
}
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem document.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "Relative URI of the problem type"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": ["string", "null"]},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "pointer", "reason"],
                "properties": {
                    "field": {"type": "string", "description": "e.g. body.email"},
                    "pointer": {"type": "string", "description": "JSON Pointer, e.g. #/email"},
                    "reason": {"type": "string"},
                },
            },
        },
    },
}
BEARER = "bearerAuth"


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any] | None]:
    yield dependant.call
    for dependency in dependant.dependencies:
        yield from _calls(dependency)


def problem_statuses(route: APIRoute, method: str) -> list[int]:
    """The problem statuses ``route`` can answer ``method`` with, by what it takes."""
    dependant = route.dependant
    # A POST, PUT or PATCH takes a body even when the route reads it itself (a file import).
    has_body = route.body_field is not None or method in {"POST", "PUT", "PATCH"}
    has_input = has_body or bool(
        dependant.path_params or dependant.query_params or dependant.header_params
    )
    statuses = {503}
    if has_body:
        statuses |= {400, 413, 415}
    if current_actor in set(_calls(dependant)):
        statuses |= {401, 403}
    if has_input:
        statuses |= {404, 422}  # 404: what a path, a query or a body names is not there
    if method in WRITE_METHODS:
        statuses.add(409)
    return sorted(statuses)


def _problem_response(status: int) -> dict[str, Any]:
    return {
        "description": DESCRIPTIONS.get(status, "Problem"),
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def document_problems(app: FastAPI, spec: dict[str, Any]) -> dict[str, Any]:
    """Add each API route's problem responses and its bearer security to ``spec``, in place."""
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token (``llt_…``) from POST /api/v1/tokens or the profile page",
    }
    for path, route in walk_routes(list(app.routes)):
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        path_item = spec.get("paths", {}).get(path)
        if path_item is None:
            continue
        for method in route.methods or ():
            operation = path_item.get(method.lower())
            if operation is None:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            declared = {int(code) for code in responses if code.isdigit() and int(code) >= 400}
            for status in sorted(declared | set(problem_statuses(route, method))):
                responses[str(status)] = _problem_response(status)
            operation["responses"] = dict(sorted(responses.items()))
            if 401 in declared or current_actor in set(_calls(route.dependant)):
                operation["security"] = [{BEARER: []}]
    schemas = components["schemas"]
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return spec


def install(app: FastAPI) -> None:
    """Build ``app``'s OpenAPI document with ``document_problems``, once, on first request."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
                servers=app.servers,
            )
            app.openapi_schema = document_problems(app, spec)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
