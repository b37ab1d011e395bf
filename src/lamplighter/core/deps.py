"""Typed dependencies shared by every route: the database session and the acting principal."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from lamplighter.core import identity
from lamplighter.core.context import Actor
from lamplighter.core.crypto import SecretBox
from lamplighter.core.db import Database
from lamplighter.core.errors import Forbidden, Unauthorized
from lamplighter.core.pagination import MAX_LIMIT, decode_cursor
from lamplighter.core.settings import Settings
from lamplighter.core.web import SESSIONS_KEY

SESSION_COOKIE = "ll_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.box
    return box


async def get_session(request: Request) -> Session:
    """A session for the request. Routes commit once, at the end of their use case.

    Async on purpose: creating a session does no I/O (the connection is taken on first use, in
    the route's worker thread), so it need not cost two hops through the thread pool. Not a
    ``yield`` dependency: FastAPI runs those in an exit stack under a shielded cancel scope, a
    tenth of a small GET; the request middleware closes the session once the response is out.
    """
    sessions: list[Session] | None = request.scope.get(SESSIONS_KEY)
    if sessions is None:
        raise RuntimeError("SessionDep needs RequestContextMiddleware, which closes the session")
    if sessions:  # one session per request: the actor's lookup and the route share it
        return sessions[0]
    session: Session = request.app.state.db.sessionmaker()
    sessions.append(session)
    return session


# Ids in paths are bounded by their columns (PostgreSQL integer; bigint for jobs and events), so an
# id out of range is a 422 naming the parameter, not a driver overflow and a 500.
MAX_ID = 2**31 - 1
MAX_BIG_ID = 2**63 - 1
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
BigId = Annotated[int, Path(ge=1, le=MAX_BIG_ID)]
SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
BoxDep = Annotated[SecretBox, Depends(get_box)]


def resolve_actor(request: Request, session: Session, settings: Settings) -> Actor | None:
    """Find the principal from a bearer token or a session cookie; None when there is neither."""
    cached = getattr(request.state, "actor", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    authorization = request.headers.get("authorization")
    actor: Actor | None = None
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise Unauthorized("use 'Authorization: Bearer <token>'")
        actor = identity.authenticate_token(
            session=session,
            plaintext=credentials.strip(),
            cache_s=settings.auth_cache_seconds,
            touch_resolution_s=settings.token_last_used_resolution_s,
        )
    elif raw := request.cookies.get(SESSION_COOKIE):
        try:
            actor, web_session = identity.authenticate_session(session=session, raw=raw)
        except Unauthorized:
            return None
        request.state.csrf_token = web_session.csrf_token
        if request.method not in SAFE_METHODS and request.url.path.startswith("/api/"):
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent, web_session.csrf_token):
                raise Forbidden("cookie-authenticated writes need the X-CSRF-Token header")
    request.state.actor = actor
    return actor


async def current_actor(request: Request) -> Actor:
    """The caller; bearer tokens found in the auth cache are resolved without a thread hop.

    Takes the request alone (the settings from the app, the request's session only when the
    database must be asked): each sub-dependency costs FastAPI a resolution on every request.
    """
    settings: Settings = request.app.state.settings
    actor = _cached_token_actor(request, settings)
    if actor is None:
        session = await get_session(request)
        actor = await run_in_threadpool(resolve_actor, request, session, settings)
    if actor is None:
        raise Unauthorized("sign in or send a bearer token")
    return actor


def _cached_token_actor(request: Request, settings: Settings) -> Actor | None:
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    actor = identity.cached_token_actor(credentials.strip(), settings.token_last_used_resolution_s)
    if actor is not None:
        request.state.actor = actor
    return actor


CurrentActor = Annotated[Actor, Depends(current_actor)]


class PageParams:
    def __init__(
        self,
        limit: Annotated[
            int, Query(ge=1, le=MAX_LIMIT, description="Page size, at most 500.")
        ] = 50,
        cursor: Annotated[
            str | None, Query(max_length=200, description="From the previous page's next_cursor.")
        ] = None,
    ) -> None:
        self.limit = limit
        self.position = decode_cursor(cursor)


PageDep = Annotated[PageParams, Depends()]
