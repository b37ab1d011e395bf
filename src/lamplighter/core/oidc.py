"""Optional OIDC (SSO) login. Placeholder until implemented."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
