"""iCalendar feeds at secret URLs: a schedule's final shifts, and a person's own shifts.

Calendar apps (Google Calendar, Outlook, Apple Calendar) subscribe to a URL and poll it without
signing in, so the secret in the URL is the feed's only credential: it is stored as a digest,
shown once when issued (``POST /api/v1/oncall/…/feed-token``), and a wrong one is a 404 like an
unknown address. Each feed covers 30 days back and 90 days ahead, in UTC.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from lamplighter.core.deps import SessionDep
from lamplighter.oncall import calendars

router = APIRouter(prefix="/oncall/feeds", include_in_schema=False)

CALENDAR_TYPE = "text/calendar; charset=utf-8"
# Every poll computes the feed afresh; a cache between the app and the calendar app (a proxy)
# must not keep one that holds a secret URL's answer for others.
HEADERS = {"Cache-Control": "private, max-age=300", "X-Robots-Tag": "noindex"}


def _calendar(text: str, filename: str) -> Response:
    headers = {**HEADERS, "Content-Disposition": f'inline; filename="{filename}"'}
    return Response(content=text, media_type=CALENDAR_TYPE, headers=headers)


@router.get("/schedule/{token}.ics")
def schedule_feed(token: str, session: SessionDep) -> Response:
    """The schedule's final shifts (who is on call, overrides included)."""
    schedule = calendars.schedule_of_feed(session=session, token=token)
    return _calendar(calendars.schedule_feed(session=session, schedule=schedule), "oncall.ics")


@router.get("/user/{token}.ics")
def user_feed(token: str, session: SessionDep) -> Response:
    """Every shift the feed's owner has, on any schedule."""
    user = calendars.user_of_feed(session=session, token=token)
    return _calendar(calendars.user_feed(session=session, user=user), "my-oncall.ics")
