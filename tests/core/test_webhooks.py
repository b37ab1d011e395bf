"""Outgoing webhooks (signed deliveries to a real local HTTP server) and the events feed."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from lamplighter.core import events, jobs, webhooks
from lamplighter.core.crypto import SecretBox
from lamplighter.core.db import Database
from lamplighter.core.errors import ValidationFailed
from lamplighter.core.events import WEBHOOK_DELIVER
from lamplighter.core.models import (
    AuditEntry,
    Event,
    Job,
    Team,
    User,
    WebhookDelivery,
    WebhookSubscription,
)
from lamplighter.core.settings import Settings, get_settings
from tests.conftest import auth, make_team, make_token, make_user
from tests.helpers import run_until

LOOPBACK = "127.0.0.0/8"


@pytest.fixture(autouse=True)
def loopback_allowed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The sink listens on 127.0.0.1, which the outbound policy refuses unless an operator
    allows its range (tests/core/test_outbound.py shows the refusal)."""
    monkeypatch.setenv("LAMPLIGHTER_OUTBOUND_ALLOW_INTERNAL", LOOPBACK)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"outbound_allow_internal": LOOPBACK})


# -- a real HTTP subscriber ---------------------------------------------------------------------
@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Sink:
    """A ThreadingHTTPServer on a free 127.0.0.1 port recording every request it gets."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.answers: list[int] = []  # scripted status codes, then 200
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with sink.lock:
                    sink.requests.append(
                        Received(
                            self.command,
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                        )
                    )
                    status = sink.answers.pop(0) if sink.answers else 200
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_POST = do_GET = do_PUT = _record

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
        port = self.server.server_address[1]
        return f"http://127.0.0.1:{port}"  # where __init__ bound it

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink()
    yield server
    server.close()


# -- helpers --------------------------------------------------------------------------------------
@dataclass
class Owner:
    user: User
    team: Team
    token: str


def owner(db: Database) -> Owner:
    """A plain member (not the lead) of a team, with a token."""
    user = make_user(db)
    team = make_team(db, members=[user])
    return Owner(user, team, make_token(db, user))


def create_hook(
    client: Any, who: Owner, url: str, event_types: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    body = {
        "name": "hook",
        "url": url,
        "event_types": event_types or ["team.*"],
        "owner_team": who.team.slug,
    } | extra
    response = client.post("/api/v1/webhooks", json=body, headers=auth(who.token))
    assert response.status_code == 201, response.text
    return dict(response.json())


def add_member(client: Any, db: Database, who: Owner) -> str:
    """Cause a team.member_added event through the API; return the new member's email."""
    newcomer = make_user(db)
    response = client.post(
        f"/api/v1/teams/{who.team.slug}/members",
        json={"email": newcomer.email},
        headers=auth(who.token),
    )
    assert response.status_code == 201, response.text
    return newcomer.email


def delivery_jobs(db: Database) -> list[Job]:
    with db.sessionmaker() as session:
        return list(
            session.scalars(sa.select(Job).where(Job.kind == WEBHOOK_DELIVER).order_by(Job.id))
        )


def settle(db: Database, settings: Settings) -> list[Job]:
    """Run a worker until no delivery job is queued or running; return the delivery jobs."""
    worker = jobs.Worker(db, settings)
    run_until(
        worker,
        lambda: all(j.status not in ("queued", "running") for j in delivery_jobs(db)),
        timeout=20,
    )
    for _ in range(3):
        worker.run_once()
    return delivery_jobs(db)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def count(db: Database, model: Any, *where: Any) -> int:
    with db.sessionmaker() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0)


# -- 1. the secret is shown once and stored encrypted --------------------------------------------
def test_secret_is_shown_once_and_stored_encrypted(
    client: Any, db: Database, settings: Settings
) -> None:
    who = owner(db)
    created = create_hook(client, who, "https://hooks.example.com/lamplighter")
    secret = created["secret"]
    assert len(secret) >= 16
    assert created["owner_team_id"] == who.team.id and created["is_active"] is True
    assert created["event_types"] == ["team.*"]

    one = client.get(f"/api/v1/webhooks/{created['id']}", headers=auth(who.token))
    listed = client.get("/api/v1/webhooks", headers=auth(who.token))
    patched = client.patch(
        f"/api/v1/webhooks/{created['id']}",
        json={"event_types": ["team.*", "user.*"]},
        headers=auth(who.token),
    )
    for response in (one, listed, patched):
        assert response.status_code == 200
        assert "secret" not in response.text  # neither the field nor the value
        assert secret not in response.text
    assert one.json()["url"] == "https://hooks.example.com/lamplighter"
    assert [w["id"] for w in listed.json()["items"]] == [created["id"]]

    with db.sessionmaker() as session:
        stored = session.scalar(
            sa.text("SELECT secret_encrypted FROM webhook_subscriptions WHERE id = :id"),
            {"id": created["id"]},
        )
        audit_dump = " ".join(json.dumps(e.diff) for e in session.scalars(sa.select(AuditEntry)))
    assert secret not in stored
    assert SecretBox(settings.effective_secret_key()).decrypt(stored) == secret
    assert secret not in audit_dump

    chosen = create_hook(
        client, who, "https://hooks.example.com/two", secret="a-secret-i-chose-myself"
    )
    assert chosen["secret"] == "a-secret-i-chose-myself"


# -- 2. a signed delivery to a real HTTP server ---------------------------------------------------
def test_event_is_delivered_signed_to_a_real_http_subscriber(
    client: Any, db: Database, settings: Settings, sink: Sink
) -> None:
    who = owner(db)
    hook = create_hook(client, who, f"{sink.url}/hooks/lamplighter?source=test")
    email = add_member(client, db, who)

    [job] = delivery_jobs(db)
    assert job.status == "queued"
    [job] = settle(db, settings)
    assert (job.status, job.attempts) == ("done", 1)

    [request] = sink.received()
    assert request.method == "POST"
    assert request.path == "/hooks/lamplighter?source=test"
    assert request.headers["x-lamplighter-signature-256"] == signature(hook["secret"], request.body)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-lamplighter-event"] == "team.member_added"

    events_page = client.get(
        "/api/v1/events", params={"type": "team.member_added"}, headers=auth(who.token)
    ).json()
    [event] = [e for e in events_page["items"] if e["payload"] == {"email": email}]
    body = json.loads(request.body)
    assert body["id"] == event["id"] and body["type"] == "team.member_added"
    assert body["subject"] == f"team:{who.team.slug}"
    assert body["payload"] == {"email": email}
    assert request.headers["x-lamplighter-delivery"] == f"{hook['id']}-{event['id']}"

    deliveries = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=auth(who.token))
    assert deliveries.status_code == 200
    [delivery] = deliveries.json()["items"]
    assert delivery["succeeded"] is True
    assert delivery["status_code"] == 200
    assert (delivery["event_id"], delivery["attempt"], delivery["error"]) == (event["id"], 1, None)


# -- 3. failing subscribers ------------------------------------------------------------------------
def test_subscriber_failing_twice_then_succeeding(
    client: Any, db: Database, settings: Settings, sink: Sink
) -> None:
    who = owner(db)
    hook = create_hook(client, who, f"{sink.url}/flaky")
    sink.answers = [500, 500]
    add_member(client, db, who)

    [job] = settle(db, settings)
    assert (job.status, job.attempts) == ("done", 3)
    deliveries = client.get(
        f"/api/v1/webhooks/{hook['id']}/deliveries", headers=auth(who.token)
    ).json()["items"]
    # newest first
    assert [(d["attempt"], d["succeeded"], d["status_code"]) for d in deliveries] == [
        (3, True, 200),
        (2, False, 500),
        (1, False, 500),
    ]
    assert deliveries[1]["error"] == "subscriber answered HTTP 500"
    received = sink.received()
    assert len(received) == 3
    # every retry carries the same bytes and the same valid signature
    assert len({r.body for r in received}) == 1
    assert {r.headers["x-lamplighter-signature-256"] for r in received} == {
        signature(hook["secret"], received[0].body)
    }


def test_subscriber_that_always_fails_ends_dead(
    client: Any, db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) % 2:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(503, text="down for maintenance")

    monkeypatch.setattr(webhooks, "TRANSPORT", httpx.MockTransport(answer))
    fast = settings.model_copy(update={"job_backoff_max_s": 0.05})
    who = owner(db)
    hook = create_hook(client, who, "https://subscriber.example.com/hook")
    add_member(client, db, who)

    [job] = settle(db, fast)
    assert (job.status, job.attempts) == ("dead", job.max_attempts)
    assert "DeliveryFailed" in (job.last_error or "")
    assert len(seen) == job.max_attempts
    assert all(str(r.url) == "https://subscriber.example.com/hook" for r in seen)
    deliveries = client.get(
        f"/api/v1/webhooks/{hook['id']}/deliveries", headers=auth(who.token)
    ).json()["items"]
    assert [d["attempt"] for d in deliveries] == list(range(job.max_attempts, 0, -1))
    assert not any(d["succeeded"] for d in deliveries)
    by_attempt = {d["attempt"]: d for d in deliveries}
    assert (by_attempt[1]["status_code"], by_attempt[1]["error"]) == (
        None,
        "ConnectError: connection refused",
    )
    assert (by_attempt[2]["status_code"], by_attempt[2]["error"]) == (
        503,
        "subscriber answered HTTP 503",
    )


# -- 4. who gets what ------------------------------------------------------------------------------
def test_events_not_matching_the_patterns_are_not_delivered(
    client: Any, db: Database, settings: Settings, sink: Sink
) -> None:
    who = owner(db)
    create_hook(
        client,
        who,
        f"{sink.url}/other",
        event_types=["incident.*", "team.created", "team.member_added.*"],
    )
    add_member(client, db, who)
    assert delivery_jobs(db) == []
    settle(db, settings)
    assert sink.received() == []


def test_inactive_subscription_gets_nothing(
    client: Any, db: Database, settings: Settings, sink: Sink
) -> None:
    who = owner(db)
    active = create_hook(client, who, f"{sink.url}/active", event_types=["team.member_added"])
    paused = create_hook(client, who, f"{sink.url}/paused", event_types=["*"])
    response = client.patch(
        f"/api/v1/webhooks/{paused['id']}", json={"is_active": False}, headers=auth(who.token)
    )
    assert response.status_code == 200 and response.json()["is_active"] is False

    add_member(client, db, who)
    assert [j.payload["subscription_id"] for j in delivery_jobs(db)] == [active["id"]]
    settle(db, settings)
    assert [r.path for r in sink.received()] == ["/active"]
    assert (
        client.get(f"/api/v1/webhooks/{paused['id']}/deliveries", headers=auth(who.token)).json()[
            "items"
        ]
        == []
    )


@pytest.mark.parametrize("change", ["delete", "pause"])
def test_pending_delivery_of_a_removed_or_paused_subscription_does_nothing(
    change: str, client: Any, db: Database, settings: Settings, sink: Sink
) -> None:
    who = owner(db)
    hook = create_hook(client, who, f"{sink.url}/gone")
    add_member(client, db, who)
    [pending] = delivery_jobs(db)
    assert pending.status == "queued"
    if change == "delete":
        response = client.delete(f"/api/v1/webhooks/{hook['id']}", headers=auth(who.token))
        assert response.status_code == 204
        assert (
            client.get(f"/api/v1/webhooks/{hook['id']}", headers=auth(who.token)).status_code == 404
        )
    else:
        response = client.patch(
            f"/api/v1/webhooks/{hook['id']}", json={"is_active": False}, headers=auth(who.token)
        )
        assert response.status_code == 200

    [job] = settle(db, settings)
    assert (job.id, job.status, job.attempts) == (pending.id, "done", 1)
    assert sink.received() == []
    assert count(db, WebhookDelivery) == 0


# -- 5. validation and authorization ---------------------------------------------------------------
INVALID_CREATES: list[tuple[dict[str, Any], str]] = [
    ({"url": "ftp://example.com/hook"}, "body.url"),
    ({"url": "example.com/hook"}, "body.url"),
    ({"url": "http://169.254.169.254/latest/meta-data/"}, "body.url"),
    ({"url": "http://[fe80::1]/hook"}, "body.url"),
    ({"url": "http://metadata.google.internal/computeMetadata/v1/"}, "body.url"),
    ({"event_types": []}, "body.event_types"),
    ({"event_types": ["team created"]}, "body.event_types.0"),
    ({"colour": "blue"}, "body.colour"),
]


def test_invalid_webhooks_are_refused_with_the_field_named(client: Any, db: Database) -> None:
    who = owner(db)
    base = {
        "name": "hook",
        "url": "https://hooks.example.com/x",
        "event_types": ["team.*"],
        "owner_team": who.team.slug,
    }
    for change, field in INVALID_CREATES:
        response = client.post("/api/v1/webhooks", json=base | change, headers=auth(who.token))
        assert response.status_code == 422, (change, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["type"] == "/problems/validation-failed"
        assert field in [e["field"] for e in problem["errors"]], (change, problem)
    assert count(db, WebhookSubscription) == 0
    assert count(db, AuditEntry, AuditEntry.action == "webhook.create") == 0

    hook = create_hook(client, who, "https://hooks.example.com/ok")
    invalid_updates: list[tuple[dict[str, Any], str]] = [
        ({"url": "http://169.254.169.254/"}, "body.url"),
        ({"event_types": []}, "body.event_types"),
        ({"name": "renamed"}, "body.name"),
    ]
    for change, field in invalid_updates:
        response = client.patch(
            f"/api/v1/webhooks/{hook['id']}", json=change, headers=auth(who.token)
        )
        assert response.status_code == 422, (change, response.text)
        assert field in [e["field"] for e in response.json()["errors"]]
    after = client.get(f"/api/v1/webhooks/{hook['id']}", headers=auth(who.token)).json()
    assert (after["url"], after["event_types"], after["name"]) == (
        "https://hooks.example.com/ok",
        ["team.*"],
        "hook",
    )


def test_outsider_cannot_create_change_or_delete(client: Any, db: Database) -> None:
    who = owner(db)
    outsider = owner(db)  # a member of another team
    hook = create_hook(client, who, "https://hooks.example.com/mine")
    body = {
        "name": "theirs",
        "url": "https://evil.example.com/",
        "event_types": ["*"],
        "owner_team": who.team.slug,
    }

    assert (
        client.post("/api/v1/webhooks", json=body, headers=auth(outsider.token)).status_code == 403
    )
    patched = client.patch(
        f"/api/v1/webhooks/{hook['id']}",
        json={"url": "https://evil.example.com/"},
        headers=auth(outsider.token),
    )
    assert patched.status_code == 403
    assert (
        client.delete(f"/api/v1/webhooks/{hook['id']}", headers=auth(outsider.token)).status_code
        == 403
    )

    with db.sessionmaker() as session:
        [sub] = session.scalars(sa.select(WebhookSubscription)).all()
    assert (sub.id, sub.url, sub.is_active) == (hook["id"], "https://hooks.example.com/mine", True)
    # the outsider may still read, and their own team's webhooks are theirs to manage
    assert (
        client.get(f"/api/v1/webhooks/{hook['id']}", headers=auth(outsider.token)).status_code
        == 200
    )
    create_hook(client, outsider, "https://hooks.example.com/theirs")


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://[::ffff:169.254.169.254]/", id="ipv4-mapped-ipv6"),
        pytest.param("http://2852039166/", id="decimal"),
        pytest.param("http://0xa9fea9fe/", id="hex"),
        pytest.param("http://metadata.google.internal./", id="trailing-dot"),
    ],
)
def test_other_spellings_of_the_metadata_address_are_refused(url: str) -> None:
    with pytest.raises(ValidationFailed):
        webhooks.check_url(url)


# -- 6. the events feed --------------------------------------------------------------------------
def test_events_after_id_in_increasing_order(client: Any, db: Database) -> None:
    token = make_token(db, make_user(db))
    with db.transaction() as session:
        ids = [
            events.emit(session=session, type="test.ordered", subject=f"n:{n}", payload={"n": n})
            for n in range(6)
        ]
    page = client.get(
        "/api/v1/events", params={"after": ids[1], "type": "test.ordered"}, headers=auth(token)
    ).json()
    assert [e["id"] for e in page["items"]] == ids[2:]
    assert [e["payload"]["n"] for e in page["items"]] == [2, 3, 4, 5]
    assert page["last_id"] == ids[-1]
    empty = client.get(
        "/api/v1/events", params={"after": ids[-1] + 1000}, headers=auth(token)
    ).json()
    assert empty == {"items": [], "last_id": ids[-1] + 1000}


def test_polling_consumer_sees_each_event_exactly_once(client: Any, db: Database) -> None:
    token = make_token(db, make_user(db))
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        rng = random.Random(n)
        try:
            for i in range(12):
                with db.transaction() as session:
                    events.emit(
                        session=session, type="test.feed", subject=f"writer:{n}", payload={"i": i}
                    )
                    time.sleep(
                        rng.uniform(0, 0.004)
                    )  # commit a little later, interleaving with others
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    seen: list[int] = []
    last_id = 0
    deadline = time.monotonic() + 30
    while True:
        writing = any(t.is_alive() for t in threads)
        response = client.get(
            "/api/v1/events", params={"after": last_id, "limit": 7}, headers=auth(token)
        )
        assert response.status_code == 200
        page = response.json()
        ids = [e["id"] for e in page["items"]]
        assert ids == sorted(ids) and all(i > last_id for i in ids)
        seen += ids
        last_id = page["last_id"]
        if not ids and not writing:
            break
        assert time.monotonic() < deadline
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(seen) == len(set(seen)), "an event was seen twice"
    with db.sessionmaker() as session:
        all_ids = list(session.scalars(sa.select(Event.id).order_by(Event.id)))
    assert seen == all_ids, "the consumer missed events"
    assert count(db, Event, Event.type == "test.feed") == 48
