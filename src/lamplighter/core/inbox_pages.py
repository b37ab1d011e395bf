"""The inbox page: the signed-in person's notices, newest first, and marking them read.

The header's unread count is a tiny fragment (``/inbox/count``) that HTMX loads on every page;
without JavaScript the header shows a plain "Inbox" link.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from lamplighter.core import inbox
from lamplighter.core.deps import Id, PageDep, SessionDep, SettingsDep, resolve_actor
from lamplighter.core.pagination import page_of
from lamplighter.core.webui import (
    PageRoute,
    QueryText,
    ViewerDep,
    WriterDep,
    is_htmx,
    page_links,
    redirect_after_post,
    render,
    safe_next,
)

router = APIRouter(include_in_schema=False, route_class=PageRoute)


@router.get("/inbox")
def inbox_page(
    request: Request, session: SessionDep, viewer: ViewerDep, page: PageDep, show: QueryText = ""
) -> Response:
    unread_only = show == "unread"
    rows = inbox.list_for(
        session=session,
        user_id=viewer.user.id,
        unread_only=unread_only,
        before_id=page.position,
        limit=page.limit + 1,
    )
    items, cursor = page_of(rows, page.limit, lambda i: i.id)
    context = {
        "items": items,
        "unread_only": unread_only,
        "unread": inbox.unread_count(session=session, user_id=viewer.user.id),
        "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        **page_links(request, cursor, page.position),
    }
    return render(request, "core/inbox.html", context, viewer=viewer)


@router.get("/inbox/count")
def inbox_count(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """The header's unread badge; empty (not a sign-in redirect) when nobody is signed in."""
    actor = resolve_actor(request, session, settings)
    count = (
        inbox.unread_count(session=session, user_id=actor.user_id)
        if actor is not None and actor.user_id is not None
        else 0
    )
    return render(request, "core/_inbox_count.html", {"unread": count}, fragment=True)


@router.post("/inbox/{item_id:int}/read")
def mark_read(
    request: Request,
    session: SessionDep,
    viewer: WriterDep,
    item_id: Id,
    next_: Annotated[str, Form(alias="next")] = "/inbox",
) -> Response:
    item = inbox.mark_read(session=session, actor=viewer.actor, item_id=item_id)
    session.commit()
    if is_htmx(request):
        context = {
            "item": item,
            "unread": inbox.unread_count(session=session, user_id=viewer.user.id),
        }
        return render(request, "core/_inbox_read.html", context, viewer=viewer, fragment=True)
    return redirect_after_post(request, safe_next(next_), f"“{item.title}” marked read.", viewer)
