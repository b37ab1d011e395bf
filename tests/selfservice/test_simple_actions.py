"""access.grant, catalog.register, ticket.create and http.request, run the way the engine runs
them: one step in one transaction, on behalf of the requester."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from lamplighter.catalog import service as catalog
from lamplighter.core import audit, identity, inbox
from lamplighter.core.context import Actor
from lamplighter.core.crypto import SecretBox
from lamplighter.core.db import Database
from lamplighter.core.models import AuditEntry, Team, User
from lamplighter.core.settings import Settings
from lamplighter.selfservice import grants
from lamplighter.selfservice.actions import http_request, simple
from lamplighter.selfservice.actions.base import ACTIONS, ActionError, StepContext
from lamplighter.tickets import service as tickets
from tests.conftest import SYSTEM, TEST_SECRET, make_team, make_user


def actor_of(db: Database, user: User) -> Actor:
    with db.sessionmaker() as session:
        return Actor(
            kind="user",
            label=user.email,
            user_id=user.id,
            role=user.role,
            team_ids=identity.team_ids_of(session=session, user_id=user.id),
        )


class Requester:
    """A developer in their team, starting run 7 of some template."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.user = make_user(db)
        self.team = make_team(db, lead=self.user)
        self.actor = actor_of(db, self.user)

    @contextmanager
    def step(self, step_id: str, *, run_id: int = 7) -> Iterator[StepContext]:
        with self.db.transaction() as session:
            yield StepContext(
                session=session,
                settings=self.settings,
                box=SecretBox(TEST_SECRET.encode()),
                actor=self.actor,
                run_id=run_id,
                step_id=step_id,
                requesting_team_id=self.team.id,
            )


@pytest.fixture
def requester(db: Database, settings: Settings) -> Requester:
    return Requester(db, settings)


def test_the_four_actions_are_registered() -> None:
    for name in ("access.grant", "catalog.register", "ticket.create", "http.request"):
        schema = ACTIONS[name].schema()
        assert schema["name"] == name and schema["input"]["properties"]


# -- access.grant ----------------------------------------------------------------------------
def owned_resource(db: Database, name: str = "orders-db") -> tuple[Team, User]:
    lead = make_user(db)
    team = make_team(db, lead=lead)
    with db.transaction() as session:
        catalog.create(
            session=session,
            actor=SYSTEM,
            data=catalog.EntityInput(kind="resource", name=name, owner=team.slug),
        )
    return team, lead


def test_access_grant_asks_the_lead_once_however_often_the_step_runs(
    db: Database, requester: Requester
) -> None:
    _, lead = owned_resource(db)
    data = simple.AccessGrantInput(
        entity="resource:orders-db", grantee=requester.user.email, reason="read the orders"
    )
    outputs = []
    for _ in range(2):
        with requester.step("access") as ctx:
            outputs.append(simple.AccessGrantAction().run(ctx, data))
    assert outputs[0] == outputs[1]
    assert outputs[0].status == "pending"
    with db.sessionmaker() as session:
        entity = catalog.get_by_ref(session=session, ref="resource:orders-db")
        listed = grants.grants_for_entity(session, entity.id)
        assert [(g.id, g.run_id, g.access) for g in listed] == [(outputs[0].grant_id, 7, "read")]
        assert len(inbox.list_for(session=session, user_id=lead.id)) == 1


def test_access_grant_is_active_at_once_for_an_approver(db: Database, requester: Requester) -> None:
    with db.transaction() as session:
        catalog.create(
            session=session,
            actor=SYSTEM,
            data=catalog.EntityInput(kind="resource", name="own-db", owner=requester.team.slug),
        )
    other = make_team(db)
    with requester.step("access") as ctx:
        output = simple.AccessGrantAction().run(
            ctx,
            {"entity": "resource:own-db", "grantee": other.slug, "access": "write", "reason": "x"},
        )
    assert output.status == "active"


def test_access_grant_compensation_revokes_and_can_run_twice(
    db: Database, requester: Requester
) -> None:
    owned_resource(db)
    data = simple.AccessGrantInput(
        entity="resource:orders-db", grantee=requester.user.email, reason="read the orders"
    )
    with requester.step("access") as ctx:
        output = simple.AccessGrantAction().run(ctx, data)
    for _ in range(2):
        with requester.step("access") as ctx:
            simple.AccessGrantAction().compensate(ctx, data, output)
    with db.sessionmaker() as session:
        grant = grants.get(session=session, grant_id=output.grant_id)
        assert grant.status == "revoked"
        assert grant.revoked_by_user_id == requester.user.id


def test_access_grant_names_the_wrong_field(db: Database, requester: Requester) -> None:
    owned_resource(db)
    cases = {
        "entity": {"entity": "resource:nope", "grantee": requester.user.email},
        "grantee": {"entity": "resource:orders-db", "grantee": "no-such-team"},
    }
    for field, values in cases.items():
        with pytest.raises(ActionError) as error, requester.step("access") as ctx:
            simple.AccessGrantAction().run(ctx, values | {"reason": "because"})
        assert error.value.field == field


# -- catalog.register ------------------------------------------------------------------------
REGISTER = {
    "entities": [
        {
            "name": "payments",
            "type": "web-service",
            "depends_on": ["resource:payments-db"],
            "links": [{"url": "https://git.example.com/payments", "title": "Repository"}],
        },
        {"kind": "resource", "name": "payments-db", "type": "database"},
    ]
}


def catalog_creates(db: Database) -> int:
    with db.sessionmaker() as session:
        return len(list(audit.iter_filtered(session=session, action="catalog.create", limit=1000)))


def test_register_is_owned_by_the_requesting_team_with_its_dependencies(
    db: Database, requester: Requester
) -> None:
    with requester.step("register") as ctx:
        output = simple.CatalogRegisterAction().run(ctx, REGISTER)
    assert output.refs == ["service:default/payments", "resource:default/payments-db"]
    with db.sessionmaker() as session:
        ownership = catalog.who_owns(session=session, ref="payments")
        assert ownership.team is not None and ownership.team.slug == requester.team.slug
        assert ownership.accountable is not None and ownership.accountable.id == requester.user.id
        service = ownership.entity
        assert service.annotations == {"lamplighter.dev/run": "run-7-register"}
        assert service.provenance == "template"
        # Stored in the one shape every path stores links in (catalog.service.normal_links).
        assert service.links == [
            {
                "url": "https://git.example.com/payments",
                "title": "Repository",
                "type": "other",
                "icon": None,
            }
        ]
        relations = catalog.relations_of(session=session, entity_id=service.id)
        assert [e.ref for e in relations["depends_on"]] == ["resource:default/payments-db"]


def test_register_twice_creates_nothing_twice(db: Database, requester: Requester) -> None:
    outputs = []
    for _ in range(2):
        with requester.step("register") as ctx:
            outputs.append(simple.CatalogRegisterAction().run(ctx, REGISTER))
    assert outputs[0] == outputs[1]
    assert catalog_creates(db) == 2


def test_register_refuses_a_name_taken_outside_the_run(db: Database, requester: Requester) -> None:
    with db.transaction() as session:
        catalog.create(
            session=session,
            actor=SYSTEM,
            data=catalog.EntityInput(
                kind="resource", name="payments-db", owner=requester.team.slug
            ),
        )
    with pytest.raises(ActionError) as error, requester.step("register") as ctx:
        simple.CatalogRegisterAction().run(ctx, REGISTER)
    assert error.value.field == "entities.1.name"
    assert "resource:default/payments-db exists already" in str(error.value)
    with db.sessionmaker() as session:
        assert catalog.find(session, simple.EntityToRegister(name="payments").ref()) is None


def test_register_for_a_team_the_requester_is_not_in_is_refused(
    db: Database, requester: Requester
) -> None:
    other = make_team(db)
    data = {"entities": [{"name": "sneaky", "owner": other.slug}]}
    with pytest.raises(ActionError) as error, requester.step("register") as ctx:
        simple.CatalogRegisterAction().run(ctx, data)
    assert error.value.field == "entities.0.owner"


def test_register_compensation_removes_only_what_the_run_created(
    db: Database, requester: Requester
) -> None:
    with requester.step("register") as ctx:
        output = simple.CatalogRegisterAction().run(ctx, REGISTER)
    with db.transaction() as session:
        catalog.create(
            session=session,
            actor=SYSTEM,
            data=catalog.EntityInput(kind="service", name="billing", owner=requester.team.slug),
        )
    data = {"entities": [*REGISTER["entities"], {"name": "billing"}]}
    for _ in range(2):
        with requester.step("register") as ctx:
            simple.CatalogRegisterAction().compensate(ctx, data, output)
    with db.sessionmaker() as session:
        remaining = catalog.list_(
            session=session, filters=catalog.ListFilters(), after_id=None, limit=10
        )
        assert [e.ref for e in remaining] == ["service:default/billing"]


# -- ticket.create ---------------------------------------------------------------------------
TICKET = {"type": "dns-certificate", "title": "CNAME payments.example.com", "description": "Hi."}


def test_ticket_create_lands_in_the_triage_queue_once(db: Database, requester: Requester) -> None:
    outputs = []
    for _ in range(2):
        with requester.step("dns") as ctx:
            outputs.append(simple.TicketCreateAction().run(ctx, TICKET))
    assert outputs[0] == outputs[1]
    with db.sessionmaker() as session:
        triage = tickets.queue(
            session=session, filters=tickets.QueueFilters(view="triage"), after_id=None, limit=10
        )
        assert [t.id for t in triage] == [outputs[0].ticket_id]
        ticket = triage[0]
        assert ticket.title == "CNAME payments.example.com"
        assert (
            "self-service run #7" in ticket.description
            and "/selfservice/runs/7" in ticket.description
        )
        assert ticket.requesting_team_id == requester.team.id
        assert ticket.requester_user_id == requester.user.id
        assert "run:7-dns" in ticket.labels


def test_ticket_create_compensation_rejects_with_a_note(db: Database, requester: Requester) -> None:
    with requester.step("dns") as ctx:
        output = simple.TicketCreateAction().run(ctx, TICKET)
    with requester.step("dns") as ctx:
        simple.TicketCreateAction().compensate(ctx, TICKET, output)
    with db.sessionmaker() as session:
        ticket = tickets.get(session=session, ticket_id=output.ticket_id)
        assert ticket.status == "rejected"
        _, comments, _ = tickets.history(session=session, ticket_id=ticket.id)
        assert "rolled back" in comments[0].body
        triage = tickets.queue(
            session=session, filters=tickets.QueueFilters(view="triage"), after_id=None, limit=10
        )
        assert triage == []
    with requester.step("dns") as ctx:  # nothing left to undo: a no-op
        simple.TicketCreateAction().compensate(ctx, TICKET, output)


def test_ticket_create_with_an_unknown_type_names_the_field(requester: Requester) -> None:
    with pytest.raises(ActionError) as error, requester.step("dns") as ctx:
        simple.TicketCreateAction().run(ctx, TICKET | {"type": "pizza"})
    assert error.value.field == "type"


# -- http.request ----------------------------------------------------------------------------
ALLOWED = "https://deploy.example.test/api/,http://10.1.2.3:8080/hooks"


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    """Requests the action sent; the fake API answers by path (see ``answer``)."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/big"):
            return httpx.Response(200, content=b"x" * (http_request.MAX_RESPONSE_BYTES + 10))
        if request.url.path.endswith("/broken"):
            return httpx.Response(503, text="down for maintenance")
        if request.method == "DELETE" and request.url.path.endswith("/gone"):
            return httpx.Response(404)
        return httpx.Response(201, json={"id": 42, "echo": request.content.decode() or None})

    def client(timeout_s: float, policy: Any = None) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(answer), timeout=timeout_s)

    monkeypatch.setattr(http_request, "http_client", client)
    return seen


@pytest.fixture
def allowed(requester: Requester) -> Requester:
    requester.settings = requester.settings.model_copy(
        # 10.1.2.3 is internal: the outbound policy refuses it unless its range is allowed
        update={"selfservice_http_allowlist": ALLOWED, "outbound_allow_internal": "10.1.0.0/16"}
    )
    return requester


def test_http_request_sends_the_idempotency_key_and_returns_the_answer(
    allowed: Requester, sent: list[httpx.Request]
) -> None:
    data = {
        "method": "POST",
        "url": "https://deploy.example.test/api/records",
        "headers": {"Authorization": "Bearer abc"},
        "body": {"name": "payments"},
        "expected_status": [201],
    }
    with allowed.step("dns") as ctx:
        output = http_request.HttpRequestAction().run(ctx, data)
    assert output.status == 201
    assert output.data == {"id": 42, "echo": '{"name":"payments"}'}
    assert sent[0].headers["Idempotency-Key"] == "run-7-dns"
    assert sent[0].headers["Authorization"] == "Bearer abc"
    assert json.loads(sent[0].content) == {"name": "payments"}


def test_http_request_caps_the_response(allowed: Requester, sent: list[httpx.Request]) -> None:
    with allowed.step("big") as ctx:
        output = http_request.HttpRequestAction().run(
            ctx, {"url": "https://deploy.example.test/api/big"}
        )
    assert output.truncated is True
    assert len(output.body) == http_request.MAX_RESPONSE_BYTES
    assert output.data is None


def test_http_request_outside_the_allowlist_is_refused_unsent(
    allowed: Requester, sent: list[httpx.Request]
) -> None:
    refused = [
        "https://deploy.example.test/admin/users",  # outside the path prefix
        "https://deploy.example.test/apix",
        "https://deploy.example.test.evil.test/api/",  # a longer host
        "https://deploy.example.test@evil.test/api/",  # credentials trick
        "http://deploy.example.test/api/",  # another scheme
        "https://deploy.example.test:8443/api/",  # another port
        "https://deploy.example.test/api/../admin",
        "http://10.1.2.3:8080/hooksmith",
    ]
    for url in refused:
        with pytest.raises(ActionError) as error, allowed.step("call") as ctx:
            http_request.HttpRequestAction().run(ctx, {"url": url})
        assert error.value.field == "url", url
    with allowed.step("call") as ctx:
        http_request.HttpRequestAction().run(ctx, {"url": "http://10.1.2.3:8080/hooks/deploy"})
    assert [str(r.url) for r in sent] == ["http://10.1.2.3:8080/hooks/deploy"]


def test_http_request_with_an_empty_allowlist_calls_nothing(
    requester: Requester, sent: list[httpx.Request]
) -> None:
    with pytest.raises(ActionError) as error, requester.step("call") as ctx:
        http_request.HttpRequestAction().run(ctx, {"url": "https://deploy.example.test/api/"})
    assert "LAMPLIGHTER_SELFSERVICE_HTTP_ALLOWLIST" in str(error.value)
    assert sent == []


def test_metadata_addresses_are_refused_even_when_allow_listed(
    requester: Requester, sent: list[httpx.Request], monkeypatch: pytest.MonkeyPatch
) -> None:
    requester.settings = requester.settings.model_copy(
        update={
            "selfservice_http_allowlist": "http://169.254.169.254/,http://[fe80::1]/,"
            "https://metadata.example.test/"
        }
    )
    real = socket.getaddrinfo

    def resolve(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "metadata.example.test":  # a name pointing at the metadata service
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 443))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    for url in (
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "https://metadata.example.test/latest",
    ):
        with pytest.raises(ActionError) as error, requester.step("call") as ctx:
            http_request.HttpRequestAction().run(ctx, {"url": url})
        assert error.value.field == "url"
    assert sent == []


def test_http_request_reports_an_unexpected_status(
    allowed: Requester, sent: list[httpx.Request]
) -> None:
    with pytest.raises(ActionError) as error, allowed.step("call") as ctx:
        http_request.HttpRequestAction().run(ctx, {"url": "https://deploy.example.test/api/broken"})
    assert error.value.retryable is True
    assert "HTTP 503" in str(error.value) and "down for maintenance" in str(error.value)


def test_http_request_compensates_with_its_declared_request(
    allowed: Requester, sent: list[httpx.Request]
) -> None:
    data = {
        "method": "POST",
        "url": "https://deploy.example.test/api/records",
        "compensate": {"method": "DELETE", "url": "https://deploy.example.test/api/records/42"},
    }
    with allowed.step("dns") as ctx:
        output = http_request.HttpRequestAction().run(ctx, data)
    with allowed.step("dns") as ctx:
        http_request.HttpRequestAction().compensate(ctx, data, output)
    assert [(r.method, r.url.path) for r in sent] == [
        ("POST", "/api/records"),
        ("DELETE", "/api/records/42"),
    ]
    assert sent[1].headers["Idempotency-Key"] == "run-7-dns-compensate"
    gone = data | {
        "compensate": {"method": "DELETE", "url": "https://deploy.example.test/api/gone"}
    }
    with allowed.step("dns") as ctx:  # already undone: nothing left, no error
        http_request.HttpRequestAction().compensate(ctx, gone, None)


def test_a_compensation_outside_the_allowlist_is_refused_before_the_call(
    allowed: Requester, sent: list[httpx.Request]
) -> None:
    data = {
        "url": "https://deploy.example.test/api/records",
        "compensate": {"method": "DELETE", "url": "https://elsewhere.example.test/x"},
    }
    with pytest.raises(ActionError) as error, allowed.step("dns") as ctx:
        http_request.HttpRequestAction().run(ctx, data)
    assert error.value.field == "compensate.url"
    assert sent == []


# -- catalog.register: dependency_of ---------------------------------------------------------
def existing_service(db: Database, team: Team, name: str = "ledger") -> None:
    """A service already in the catalog, depending on a queue of its own."""
    with db.transaction() as session:
        catalog.create(
            session=session,
            actor=SYSTEM,
            data=catalog.EntityInput(kind="resource", name=f"{name}-queue", owner=team.slug),
        )
        catalog.create(
            session=session,
            actor=SYSTEM,
            data=catalog.EntityInput(
                kind="service",
                name=name,
                owner=team.slug,
                depends_on=[f"resource:{name}-queue"],
            ),
        )


DEPENDENCY_OF = {
    "entities": [
        {
            "kind": "resource",
            "name": "ledger-db",
            "type": "database",
            "dependency_of": ["service:default/ledger"],
        },
        {"kind": "resource", "name": "ledger-cache", "dependency_of": ["service:ledger"]},
    ]
}


def depends_on(db: Database, ref: str) -> list[str]:
    with db.sessionmaker() as session:
        entity = catalog.get_by_ref(session=session, ref=ref)
        return [
            e.ref for e in catalog.relations_of(session=session, entity_id=entity.id)["depends_on"]
        ]


def service_updates(db: Database, ref: str = "service:default/ledger") -> list[AuditEntry]:
    with db.sessionmaker() as session:
        return list(
            audit.iter_filtered(session=session, object_id=ref, action="catalog.update", limit=100)
        )[::-1]


def test_register_dependency_of_makes_the_existing_service_depend_on_the_new_entities(
    db: Database, requester: Requester
) -> None:
    existing_service(db, requester.team)
    with requester.step("register") as ctx:
        simple.CatalogRegisterAction().run(ctx, DEPENDENCY_OF)
    assert depends_on(db, "service:ledger") == [
        "resource:default/ledger-cache",
        "resource:default/ledger-db",
        "resource:default/ledger-queue",
    ]
    with db.sessionmaker() as session:
        database = catalog.get_by_ref(session=session, ref="resource:ledger-db")
        relations = catalog.relations_of(session=session, entity_id=database.id)
        assert [e.ref for e in relations["dependency_of"]] == ["service:default/ledger"]
        _, view = catalog.read_view(session=session, ref="service:ledger")
        assert [r.name for r in view["depends_on"]] == ["ledger-cache", "ledger-db", "ledger-queue"]
    updates = service_updates(db)
    assert [u.actor_id for u in updates] == [f"user:{requester.user.id}"] * 2
    assert updates[-1].diff["after"]["depends_on"] == [
        "resource:default/ledger-cache",
        "resource:default/ledger-db",
        "resource:default/ledger-queue",
    ]


def test_register_dependency_of_a_service_outside_the_requesters_team_is_refused(
    db: Database, requester: Requester
) -> None:
    existing_service(db, make_team(db))
    before = catalog_creates(db)
    with pytest.raises(ActionError) as error, requester.step("register") as ctx:
        simple.CatalogRegisterAction().run(ctx, DEPENDENCY_OF)
    assert error.value.field == "entities.0.dependency_of.0"
    assert "only members of the owning team, SREs and admins" in str(error.value)
    assert catalog_creates(db) == before
    with db.sessionmaker() as session:
        assert (
            catalog.find(session, simple.EntityToRegister(kind="resource", name="ledger-db").ref())
            is None
        )
    assert depends_on(db, "service:ledger") == ["resource:default/ledger-queue"]
    assert service_updates(db) == []


def test_register_dependency_of_an_sre_may_change_any_team_s_service(
    db: Database, requester: Requester
) -> None:
    existing_service(db, make_team(db))
    requester.actor = Actor(
        kind="user",
        label=requester.user.email,
        user_id=requester.user.id,
        role="sre",
        team_ids=requester.actor.team_ids,
    )
    with requester.step("register") as ctx:
        simple.CatalogRegisterAction().run(ctx, DEPENDENCY_OF)
    assert "resource:default/ledger-db" in depends_on(db, "service:ledger")


def test_register_dependency_of_an_unknown_entity_names_the_field(
    db: Database, requester: Requester
) -> None:
    existing_service(db, requester.team)
    data = {
        "entities": [
            DEPENDENCY_OF["entities"][0],
            {
                "kind": "resource",
                "name": "x-db",
                "dependency_of": ["service:ledger", "service:nope"],
            },
        ]
    }
    before = catalog_creates(db)
    with pytest.raises(ActionError) as error, requester.step("register") as ctx:
        simple.CatalogRegisterAction().run(ctx, data)
    assert error.value.field == "entities.1.dependency_of.1"
    assert "no catalog entity service:default/nope" in str(error.value)
    assert catalog_creates(db) == before
    assert service_updates(db) == []


def test_register_dependency_of_twice_changes_nothing_the_second_time(
    db: Database, requester: Requester
) -> None:
    existing_service(db, requester.team)
    outputs = []
    for _ in range(2):
        with requester.step("register") as ctx:
            outputs.append(simple.CatalogRegisterAction().run(ctx, DEPENDENCY_OF))
    assert outputs[0] == outputs[1]
    assert len(service_updates(db)) == 2  # one per new entity, none from the second run
    assert depends_on(db, "service:ledger") == [
        "resource:default/ledger-cache",
        "resource:default/ledger-db",
        "resource:default/ledger-queue",
    ]


def test_register_dependency_of_compensation_leaves_the_service_as_it_was(
    db: Database, requester: Requester
) -> None:
    existing_service(db, requester.team)
    with db.sessionmaker() as session:
        service = catalog.get_by_ref(session=session, ref="service:ledger")
        before = (catalog.input_of(session, service), service.content_hash)
    with requester.step("register") as ctx:
        output = simple.CatalogRegisterAction().run(ctx, DEPENDENCY_OF)
    for _ in range(2):
        with requester.step("register") as ctx:
            simple.CatalogRegisterAction().compensate(ctx, DEPENDENCY_OF, output)
    with db.sessionmaker() as session:
        service = catalog.get_by_ref(session=session, ref="service:ledger")
        assert (catalog.input_of(session, service), service.content_hash) == before
        assert (
            catalog.find(session, simple.EntityToRegister(kind="resource", name="ledger-db").ref())
            is None
        )
    assert depends_on(db, "service:ledger") == ["resource:default/ledger-queue"]
    updates = service_updates(db)
    assert [u.actor_id for u in updates] == [f"user:{requester.user.id}"] * 4
    # the undo is in the service's history, and it ends where it began
    assert updates[-1].diff["after"]["depends_on"] == ["resource:default/ledger-queue"]
    assert [u.diff["after"]["depends_on"] for u in updates[2:]] == [
        ["resource:default/ledger-db", "resource:default/ledger-queue"],
        ["resource:default/ledger-queue"],
    ]
