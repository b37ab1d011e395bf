"""The outbound policy (core/outbound.py): which addresses webhooks, http.request and catalog
fetches may reach, checked where the socket is opened; a real webhook delivery to a local server
is refused unless its range is allowed."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpcore
import httpx
import pytest
import sqlalchemy as sa

from lamplighter.core import events, jobs, outbound, webhooks
from lamplighter.core.crypto import SecretBox
from lamplighter.core.db import Database
from lamplighter.core.errors import ValidationFailed
from lamplighter.core.models import WebhookDelivery
from lamplighter.core.settings import Settings
from tests.conftest import SYSTEM, make_team
from tests.helpers import run_until

PUBLIC = "93.184.216.34"

REFUSED_URLS = [
    "http://127.0.0.1/",
    "http://127.1/",
    "http://0x7f000001/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://127.0.0.1./",
    "http://[::1]/",
    "http://0.0.0.0/",
    "http://0.1.2.3/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://169.254.169.254/",
    "http://169.254.1.1/",
    "http://100.100.100.200/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[fd00:ec2::254]/",
    "http://[ff02::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:10.0.0.1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[64:ff9b::c0a8:101]/",
    "http://[2002:7f00:1::]/",
    "http://[2002:a9fe:a9fe::]/",
    "http://[2002:a00:1::]/",
    "http://metadata.google.internal/",
]


def fixed(*answers: str) -> outbound.Resolver:
    def resolve(host: str, port: int) -> Sequence[str]:
        return list(answers)

    return resolve


class Recording(httpcore.NetworkBackend):
    """Records the addresses a connection is opened to, and opens none."""

    def __init__(self) -> None:
        self.addresses: list[str] = []

    def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        self.addresses.append(host)
        raise httpcore.ConnectError("not in this test")


def send(policy: outbound.Policy, url: str, backend: httpcore.NetworkBackend) -> None:
    transport = outbound.PolicyTransport(policy, backend=backend)
    with outbound.client(policy, timeout_s=2, transport=transport) as client:
        client.get(url)


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_internal_addresses_are_refused_in_every_spelling(url: str) -> None:
    backend = Recording()
    with pytest.raises((outbound.Refused, httpx.InvalidURL)):
        send(outbound.Policy(resolver=fixed(PUBLIC)), url, backend)
    assert backend.addresses == []
    with pytest.raises(ValidationFailed):  # and at subscription time, where it is literal
        webhooks.check_url(url, policy=outbound.Policy())


@pytest.mark.parametrize(
    "answer", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "::ffff:192.168.0.1", "fd00::1"]
)
def test_a_name_resolving_to_an_internal_address_is_refused(answer: str) -> None:
    backend = Recording()
    with pytest.raises(outbound.Refused) as refused:
        send(outbound.Policy(resolver=fixed(PUBLIC, answer)), "https://hooks.example.com/", backend)
    assert backend.addresses == []
    assert answer not in str(refused.value)  # the reason does not map the network


def test_a_public_address_is_allowed_and_connected_to() -> None:
    backend = Recording()
    with pytest.raises(httpx.ConnectError):
        send(outbound.Policy(resolver=fixed(PUBLIC)), "https://hooks.example.com/x", backend)
    assert backend.addresses == [PUBLIC]
    assert outbound.Policy().refusal(outbound.literal_address("64:ff9b::5db8:d822")) is None  # type: ignore[arg-type]


def test_rebinding_cannot_reach_loopback() -> None:
    """A resolver answering a public address first, then 127.0.0.1: the early check passes, the
    connection resolves once more, checks, and never opens a socket to 127.0.0.1."""
    answers = iter([[PUBLIC], ["127.0.0.1"], ["127.0.0.1"]])
    policy = outbound.Policy(resolver=lambda host, port: next(answers))
    outbound.check_allowed(
        "https://rebind.example.com/x",
        "https://rebind.example.com/",
        field="url",
        setting="X",
        policy=policy,
    )
    backend = Recording()
    with pytest.raises(outbound.Refused):
        send(policy, "https://rebind.example.com/x", backend)
    assert backend.addresses == []


class Server:
    def __init__(self) -> None:
        self.hosts: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hosts.append(self.headers["Host"])
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "http://127.0.0.1:9/")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.http.server_address[1]
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.http.shutdown()
    running.http.server_close()


def test_the_checked_address_is_connected_with_the_original_host_header(server: Server) -> None:
    policy = outbound.Policy(outbound.parse_networks("127.0.0.0/8"), fixed("127.0.0.1"))
    with outbound.client(policy, timeout_s=5) as client:
        assert client.get(f"http://hooks.example.com:{server.port}/").status_code == 200
        redirect = client.get(f"http://hooks.example.com:{server.port}/redirect")
    assert redirect.status_code == 302  # not followed
    assert server.hosts == [f"hooks.example.com:{server.port}"] * 2


def test_allowing_a_named_range_lets_only_that_range_through(server: Server) -> None:
    allowed = outbound.Policy(outbound.parse_networks("10.20.0.0/16, 127.0.0.0/8"))
    assert allowed.refusal(outbound.literal_address("10.20.3.4")) is None  # type: ignore[arg-type]
    assert allowed.refusal(outbound.literal_address("10.21.0.1")) is not None  # type: ignore[arg-type]
    assert allowed.refusal(outbound.literal_address("169.254.169.254")) is not None  # type: ignore[arg-type]
    with outbound.client(allowed, timeout_s=5) as client:
        assert client.get(f"http://127.1:{server.port}/").status_code == 200
    with pytest.raises(ValueError):
        Settings(outbound_allow_internal="10.0.0.0/33")


def deliver_one(db: Database, settings: Settings, url: str) -> WebhookDelivery:
    team = make_team(db, slug="hooks")
    with db.transaction() as session:
        webhooks.create(
            session=session,
            actor=SYSTEM,
            box=SecretBox(settings.effective_secret_key()),
            name="probe",
            url=url,
            event_types=["probe.*"],
            owner_team=team.slug,
            policy=outbound.Policy.from_settings(settings),
        )
        events.emit(session=session, type="probe.sent", subject="p:1", payload={})
    worker = jobs.Worker(db, settings)
    run_until(worker, lambda: count(db) > 0, timeout=20)
    with db.sessionmaker() as session:
        return session.scalars(sa.select(WebhookDelivery)).one()


def count(db: Database) -> int:
    with db.sessionmaker() as session:
        return len(session.scalars(sa.select(WebhookDelivery)).all())


@pytest.fixture
def no_strict_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "STRICT", False)


def test_a_webhook_to_a_local_server_is_refused_without_its_status_code(
    db: Database,
    settings: Settings,
    server: Server,
    monkeypatch: pytest.MonkeyPatch,
    no_strict_events: None,
) -> None:
    # by a name, so that the subscription is accepted and the delivery is what refuses it
    monkeypatch.setattr(outbound, "RESOLVER", fixed("127.0.0.1"))
    delivery = deliver_one(db, settings, f"http://scanner.example.com:{server.port}/")
    assert server.hosts == []
    assert (delivery.succeeded, delivery.status_code) == (False, None)
    assert delivery.error == "refused by the outbound policy"


def test_a_webhook_to_a_local_server_is_delivered_when_loopback_is_allowed(
    db: Database, settings: Settings, server: Server, no_strict_events: None
) -> None:
    allowed = settings.model_copy(update={"outbound_allow_internal": "127.0.0.0/8"})
    delivery = deliver_one(db, allowed, f"http://127.0.0.1:{server.port}/")
    assert server.hosts == [f"127.0.0.1:{server.port}"]
    assert (delivery.succeeded, delivery.status_code) == (True, 200)


def test_a_literal_internal_webhook_is_refused_when_subscribing() -> None:
    with pytest.raises(ValidationFailed) as refused:
        webhooks.check_url("http://127.1:8080/", policy=outbound.Policy())
    assert refused.value.errors[0].field == "body.url"
