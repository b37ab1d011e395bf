"""Backstage import and export over HTTP (placeholder until implemented)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/catalog", tags=["catalog"])
