"""Helpers shared by the tests: signing in through the form, reading pages, running the job
queue until it is empty, a live server in a thread, the CLI runner, and job handlers that
exist for one test only. Fixtures built on them live in ``tests/conftest.py``."""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

import httpx
import sqlalchemy as sa
import typer
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from lamplighter.core import jobs
from lamplighter.core.db import Database
from lamplighter.core.models import Job, User
from lamplighter.core.settings import Settings
from tests import conftest  # the factories; conftest's fixtures use these helpers too

PASSWORD = "correct horse battery"  # of every user made with person()
HTMX = {"HX-Request": "true"}


class _HasText(Protocol):
    @property
    def text(self) -> str: ...


# -- pages -----------------------------------------------------------------------------------------
def person(db: Database, email: str | None = None, **kwargs: Any) -> User:
    """A user who can sign in through the form with PASSWORD."""
    return conftest.make_user(db, email=email, password=PASSWORD, **kwargs)


def found(pattern: str, page: str, flags: int = 0) -> re.Match[str]:
    """The first match of ``pattern`` in ``page``; fails the test when there is none."""
    match = re.search(pattern, page, flags)
    assert match, f"nothing matches {pattern!r}"
    return match


def csrf_in(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the page has no CSRF field"
    return match.group(1)


def text(page: str | _HasText) -> str:
    """The page's visible text, roughly: tags dropped, entities decoded, spaces collapsed."""
    body = page if isinstance(page, str) else page.text
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def login(
    client: TestClient, email: str, password: str = PASSWORD, next_: str = "/"
) -> httpx.Response:
    """Post the sign-in form as a browser would; the response is the test's to check."""
    form = client.get("/login")
    data = {"email": email, "password": password, "csrf_token": csrf_in(form.text), "next": next_}
    response: httpx.Response = client.post("/login", data=data, follow_redirects=False)
    return response


def sign_in(client: TestClient, user: User, *, password: str = PASSWORD) -> str:
    """Sign in through the form (as nobody else first); return the session's CSRF token."""
    client.cookies.clear()
    response = login(client, user.email, password)
    assert response.status_code == 303, response.text
    return csrf_in(client.get("/").text)


# -- jobs ------------------------------------------------------------------------------------------
def drain(
    db: Database, settings: Settings, *, worker: jobs.Worker | None = None, rounds: int = 400
) -> None:
    """Run the real worker until no job is queued (waiting out short retry backoffs)."""
    worker = worker or jobs.Worker(db, settings)
    for _ in range(rounds):
        if worker.run_once():
            continue
        with db.sessionmaker() as session:
            waiting = session.scalar(
                sa.select(sa.func.count()).select_from(Job).where(Job.status == "queued")
            )
        if not waiting:
            return
        time.sleep(0.05)
    raise AssertionError("jobs still queued")


def run_until(worker: jobs.Worker, done: Callable[[], bool], *, timeout: float = 15.0) -> None:
    """Run the worker until ``done()``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the worker did not get there in time"
        if worker.run_once() == 0:
            time.sleep(0.02)


@contextmanager
def job_handlers(
    handlers: Mapping[str, jobs.Handler], *, batch_safe: Collection[str] = ()
) -> Iterator[None]:
    """Register job handlers for the block only: a test's own kinds never leak into others."""
    before = {kind: jobs.HANDLERS.get(kind) for kind in handlers}
    for kind, func in handlers.items():
        jobs.HANDLERS[kind] = jobs.HandlerSpec(kind=kind, func=func, batch_safe=kind in batch_safe)
    try:
        yield
    finally:
        for kind, spec in before.items():
            if spec is None:
                jobs.HANDLERS.pop(kind, None)
            else:
                jobs.HANDLERS[kind] = spec


# -- servers and the CLI ---------------------------------------------------------------------------
class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # not the main thread: leave signals alone
        pass


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on a free port; yield its base URL."""
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started and server.servers:
            break
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class Invoke(Protocol):
    def __call__(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> Result: ...


def cli_invoker(app: typer.Typer) -> Invoke:
    """Run ``lamplighter …`` in-process; exceptions propagate so a crash shows its traceback."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(app, list(args), input=input, env=env, catch_exceptions=False)

    return invoke
