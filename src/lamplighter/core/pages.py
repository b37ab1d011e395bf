"""HTML pages of the core (placeholder until the UI lands)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from lamplighter.core.web import problem_response

router = APIRouter(include_in_schema=False)


def render_error_page(request: Request, body: dict[str, Any]) -> Response:
    return problem_response(body)


def problem_type_page(request: Request, slug: str, title: str | None) -> Response:
    return HTMLResponse(f"<h1>{title or 'Unknown problem type'}</h1>", status_code=200 if title else 404)
