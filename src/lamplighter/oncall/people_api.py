"""On-call REST routes: escalation policies, contact methods, notification rules (being
written)."""

from fastapi import APIRouter

router = APIRouter()
