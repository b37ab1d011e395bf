"""Shared makers for the escalation policy, contact and channel tests: an organisation of people,
a schedule, a real HTTP sink and a real SMTP server on 127.0.0.1.

Test modules import the fixtures they use by name (``from tests.oncall.people_fixtures import
folks``): pytest finds a fixture in a module's namespace.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword

from lamplighter.core import identity
from lamplighter.core.context import Actor
from lamplighter.core.crypto import SecretBox
from lamplighter.core.db import Database
from lamplighter.core.models import AuditEntry, Team, User
from lamplighter.oncall.models import OnCallSchedule
from tests.conftest import TEST_SECRET, make_team, make_user

LOOPBACK = "127.0.0.0/8"


def actor_of(db: Database, user: User) -> Actor:
    with db.sessionmaker() as session:
        return Actor(
            kind="user",
            label=user.email,
            user_id=user.id,
            role=user.role,
            team_ids=identity.team_ids_of(session=session, user_id=user.id),
        )


class Folks:
    """Team Payments (lead and a member) with a schedule; team Search; an SRE, an admin, a
    viewer, and a deactivated person."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.lead = make_user(db, email="lead@example.com")
        self.member = make_user(db, email="alice@example.com")
        self.team: Team = make_team(db, slug="payments", lead=self.lead, members=[self.member])
        self.outsider = make_user(db, email="bob@example.com")
        self.other_team: Team = make_team(db, slug="search", lead=self.outsider)
        self.sre = make_user(db, email="sre@example.com", role="sre")
        self.admin = make_user(db, email="admin@example.com", role="admin")
        self.viewer = make_user(db, email="viewer@example.com", role="viewer")
        self.gone = make_user(db, email="gone@example.com")
        with db.transaction() as session:
            session.get(User, self.gone.id).is_active = False  # type: ignore[union-attr]
            schedule = OnCallSchedule(team_id=self.team.id, name="Payments primary")
            session.add(schedule)
            session.flush()
            self.schedule_id = schedule.id

    def actor(self, user: User) -> Actor:
        return actor_of(self.db, user)


@pytest.fixture
def folks(db: Database) -> Folks:
    return Folks(db)


@pytest.fixture
def box() -> SecretBox:
    """The box the app encrypts with (conftest's settings carry TEST_SECRET)."""
    return SecretBox(TEST_SECRET.encode())


def audit_text(db: Database) -> str:
    """Every audit entry's action and diff, as one text to search for leaks."""
    with db.sessionmaker() as session:
        entries = session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)).all()
        return "\n".join(f"{e.action} {json.dumps(e.diff)}" for e in entries)


def audit_actions(db: Database) -> list[str]:
    with db.sessionmaker() as session:
        return list(session.scalars(sa.select(AuditEntry.action).order_by(AuditEntry.id)))


# -- a real HTTP receiver --------------------------------------------------------------------------
@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def signed_by(self, key: str) -> bool:
        """Whether the body carries the event webhooks' signature made with ``key``."""
        expected = "sha256=" + hmac.new(key.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("x-lamplighter-signature-256", ""), expected)


class Sink:
    """A ThreadingHTTPServer on a free 127.0.0.1 port recording each POST; ``answers`` scripts
    the status codes (then 200), ``body`` is what it says."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.answers: list[int] = []
        self.body = b"ok"
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with sink.lock:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    sink.requests.append(Received(self.path, headers, body))
                    status = sink.answers.pop(0) if sink.answers else 200
                    answer = sink.body
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def sink() -> Iterator[Sink]:
    running = Sink()
    yield running
    running.close()


# -- a real SMTP server ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Mailbox:
    """What an aiosmtpd server received, and how it answers: ``refuse_rcpt`` is the reply to
    RCPT TO (e.g. ``550 5.1.1 no such user``), None to accept."""

    messages: list[tuple[Envelope, EmailMessage]] = field(default_factory=list)
    refuse_rcpt: str | None = None
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.refuse_rcpt:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope, parsed))
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((login, password))
        return AuthResult(success=password == "mail-password-0123")


class SmtpServer:
    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.port = free_port()
        self.controller = Controller(
            mailbox,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=mailbox.authenticate,
            auth_require_tls=False,  # no certificate here; production sets STARTTLS
        )
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer(Mailbox())
    yield server
    server.stop()
