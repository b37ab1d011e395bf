"""Catalog pages (placeholder until implemented)."""

from __future__ import annotations

from fastapi import APIRouter

from lamplighter.core.webui import PageRoute

router = APIRouter(include_in_schema=False, route_class=PageRoute)
