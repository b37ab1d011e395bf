"""On-call REST routes: schedules, overrides, feeds, who is on call (being written)."""

from fastapi import APIRouter

router = APIRouter()
