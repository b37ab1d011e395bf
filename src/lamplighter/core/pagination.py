"""Opaque keyset cursors shared by every list endpoint."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute

from lamplighter.core.errors import ValidationFailed

MAX_LIMIT = 500
MAX_ID = 2**63 - 1  # the widest id column; beyond it SQLite's driver cannot bind the value
T = TypeVar("T")


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"after": last_id})).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
        after = value["after"]
        if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after <= MAX_ID:
            raise ValueError
        return after
    except (ValueError, KeyError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise ValidationFailed.one("query.cursor", "not a cursor this server issued") from exc


def page_of(items: list[T], limit: int, key: Callable[[T], int]) -> tuple[list[T], str | None]:
    """Split a fetch of ``limit + 1`` rows into the page and the cursor for the next one."""
    if len(items) > limit:
        items = items[:limit]
        return items, encode_cursor(key(items[-1]))
    return items, None


def keyset(
    query: Select[Any],
    id_column: InstrumentedAttribute[int],
    *,
    position: int | None,
    limit: int,
    newest_first: bool = False,
) -> Select[Any]:
    """Order a query by id and continue after a cursor's position (every list uses this)."""
    if newest_first:
        query = query.order_by(id_column.desc())
        if position:
            query = query.where(id_column < position)
    else:
        query = query.order_by(id_column)
        if position:
            query = query.where(id_column > position)
    return query.limit(limit)
