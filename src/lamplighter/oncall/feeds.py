"""iCalendar feeds at secret URLs (being written)."""

from fastapi import APIRouter

router = APIRouter()
