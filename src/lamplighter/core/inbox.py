"""The in-app inbox: notices for a user, written in the transaction of the change they report."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.core import audit
from lamplighter.core.context import Actor
from lamplighter.core.db import utcnow
from lamplighter.core.errors import Forbidden, NotFound
from lamplighter.core.models import InboxItem
from lamplighter.core.pagination import keyset


def notify(
    *, session: Session, user_id: int, title: str, body: str = "", link: str | None = None
) -> InboxItem:
    item = notice(user_id=user_id, title=title, body=body, link=link)
    session.add(item)
    session.flush()
    return item


def notice(*, user_id: int, title: str, body: str = "", link: str | None = None) -> InboxItem:
    """A notice not yet added to any session, for a caller adding many at once."""
    return InboxItem(user_id=user_id, title=title[:300], body=body, link=link)


def list_for(
    *,
    session: Session,
    user_id: int,
    unread_only: bool = False,
    before_id: int | None = None,
    limit: int = 50,
) -> list[InboxItem]:
    query = sa.select(InboxItem).where(InboxItem.user_id == user_id)
    if unread_only:
        query = query.where(InboxItem.read_at.is_(None))
    return list(
        session.scalars(
            keyset(query, InboxItem.id, position=before_id, limit=limit, newest_first=True)
        )
    )


def unread_count(*, session: Session, user_id: int) -> int:
    return int(
        session.scalar(
            sa.select(sa.func.count())
            .select_from(InboxItem)
            .where(InboxItem.user_id == user_id, InboxItem.read_at.is_(None))
        )
        or 0
    )


def mark_read(*, session: Session, actor: Actor, item_id: int) -> InboxItem:
    """Mark one of your own notices read."""
    item = session.get(InboxItem, item_id)
    if item is None:
        raise NotFound(f"no inbox item {item_id}")
    if item.user_id != actor.user_id:
        raise Forbidden("this notice is someone else's")
    if item.read_at is None:
        item.read_at = utcnow()
        session.flush()
        audit.record(
            session=session,
            actor=actor,
            action="inbox.read",
            object_type="inbox_item",
            object_id=item.id,
        )
    return item
