"""The authorization matrix, generated from the route table.

Every mutating route must answer 401 without credentials, 403 for a signed-in user outside the
owning team (and for a viewer), and succeed for an owner. A new mutating route without a scenario
here fails `test_every_mutating_route_has_a_scenario`, so new routes are covered automatically.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa

from lamplighter.core import jobs
from lamplighter.core.models import AuditEntry, Job
from lamplighter.core.web import walk_routes
from tests.conftest import SYSTEM, auth, make_team, make_token, make_user

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass
class World:
    db: Any
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, Any] = field(default_factory=dict)


def build_world(db: Any) -> World:
    world = World(db=db)
    admin = make_user(db, role="admin")
    sre = make_user(db, role="sre")
    lead_a = make_user(db)
    member_a = make_user(db)
    extra_a = make_user(db)
    member_b = make_user(db)
    viewer = make_user(db, role="viewer")
    team_a = make_team(db, slug="team-a", lead=lead_a, members=[member_a, extra_a])
    make_team(db, slug="team-b", lead=member_b)
    for name, user in {
        "admin": admin,
        "sre": sre,
        "member_a": member_a,
        "member_b": member_b,
        "viewer": viewer,
    }.items():
        world.tokens[name] = make_token(db, user)
    world.ids.update(member_a=member_a.id, extra_a=extra_a.id, team_a=team_a.slug)
    return world


@dataclass(frozen=True)
class Scenario:
    """How to call one route: ``prepare`` returns (concrete path, JSON body) for a fresh target."""

    prepare: Callable[[World, Any], tuple[str, dict[str, Any] | None]]
    owner: str
    outsiders: tuple[str, ...]


def _new_user_email(world: World, client: Any) -> str:
    return make_user(world.db).email


def _webhook(world: World, client: Any) -> int:
    response = client.post(
        "/api/v1/webhooks",
        json={
            "name": "w",
            "url": "https://hooks.example.com/hook",
            "event_types": ["*"],
            "owner_team": "team-a",
        },
        headers=auth(world.tokens["member_a"]),
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _member_token(world: World, client: Any) -> int:
    response = client.post(
        "/api/v1/tokens", json={"name": "t"}, headers=auth(world.tokens["member_a"])
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _dead_job(world: World, client: Any) -> int:
    with world.db.transaction() as session:
        jobs.enqueue(session=session, kind="core.noop", payload={})
    with world.db.transaction() as session:
        job = session.scalars(sa.select(Job).order_by(Job.id.desc())).first()
        job.status = "dead"
        return int(job.id)


def _catalog_entity(world: World, client: Any) -> str:
    from lamplighter.catalog import service as catalog

    name = f"svc-{len(world.ids)}-{id(client) % 1000}"
    with world.db.transaction() as session:
        catalog.create(
            session=session,
            actor=SYSTEM,
            data=catalog.EntityInput(kind="service", name=name, owner="team-a"),
        )
    world.ids["entities"] = world.ids.get("entities", 0) + 1
    return f"/api/v1/catalog/entities/service/default/{name}"


def _team_a_ticket(world: World, client: Any) -> int:
    from lamplighter.core import identity
    from lamplighter.tickets import service as tickets

    with world.db.transaction() as session:
        ticket = tickets.create(
            session=session,
            actor=SYSTEM,
            data=tickets.TicketInput(type="database", title="A database please"),
        )
        ticket.assignee_team_id = identity.get_team(session=session, slug="team-a").id
        return int(ticket.id)


def _inbox_item(world: World, client: Any) -> int:
    from lamplighter.core import inbox

    with world.db.transaction() as session:
        return int(inbox.notify(session=session, user_id=world.ids["member_a"], title="hello").id)


SCENARIOS: dict[tuple[str, str], Scenario] = {
    ("POST", "/api/v1/tickets/import"): Scenario(
        lambda w, c: (
            "/api/v1/tickets/import",
            {
                "format": "csv",
                "content": "source_id,type,title,created_at\nm-1,database,From the matrix,2026-03-02T09:00:00Z\n",
            },
        ),
        owner="sre",
        outsiders=("member_a", "viewer"),
    ),
    ("POST", "/api/v1/catalog/import"): Scenario(
        lambda w, c: (
            "/api/v1/catalog/import",
            {
                "files": {
                    "svc/catalog-info.yaml": "apiVersion: backstage.io/v1alpha1\nkind: Component\n"
                    "metadata:\n  name: imported-svc\nspec:\n  type: service\n  owner: team-a\n"
                }
            },
        ),
        owner="member_a",
        outsiders=("member_b", "viewer"),
    ),
    ("POST", "/api/v1/tickets"): Scenario(
        lambda w, c: ("/api/v1/tickets", {"type": "database", "title": "Need a database"}),
        owner="member_a",
        outsiders=("viewer",),
    ),
    ("PATCH", "/api/v1/tickets/{ticket_id}"): Scenario(
        lambda w, c: (f"/api/v1/tickets/{_team_a_ticket(w, c)}", {"priority": "P1"}),
        owner="member_a",
        outsiders=("member_b", "viewer"),
    ),
    ("POST", "/api/v1/tickets/{ticket_id}/transitions"): Scenario(
        lambda w, c: (f"/api/v1/tickets/{_team_a_ticket(w, c)}/transitions", {"status": "triaged"}),
        owner="member_a",
        outsiders=("member_b", "viewer"),
    ),
    ("POST", "/api/v1/tickets/{ticket_id}/comments"): Scenario(
        lambda w, c: (f"/api/v1/tickets/{_team_a_ticket(w, c)}/comments", {"body": "On it"}),
        owner="member_a",
        outsiders=("member_b", "viewer"),
    ),
    ("POST", "/api/v1/tickets/{ticket_id}/work-logs"): Scenario(
        lambda w, c: (f"/api/v1/tickets/{_team_a_ticket(w, c)}/work-logs", {"minutes": 25}),
        owner="member_a",
        outsiders=("member_b", "viewer"),
    ),
    ("POST", "/api/v1/inbox/{item_id}/read"): Scenario(
        lambda w, c: (f"/api/v1/inbox/{_inbox_item(w, c)}/read", None),
        owner="member_a",
        outsiders=("member_b", "sre", "viewer"),
    ),
    ("PUT", "/api/v1/ticket-types/{slug}"): Scenario(
        lambda w, c: (
            "/api/v1/ticket-types/kafka-acl",
            {"name": "Kafka ACL", "expected_effort_minutes": 15},
        ),
        owner="sre",
        outsiders=("member_a", "viewer"),
    ),
    ("POST", "/api/v1/catalog/entities"): Scenario(
        lambda w, c: (
            "/api/v1/catalog/entities",
            {"kind": "service", "name": "new-svc", "owner": "team-a"},
        ),
        owner="member_a",
        outsiders=("member_b", "viewer"),
    ),
    ("PATCH", "/api/v1/catalog/entities/{kind}/{namespace}/{name}"): Scenario(
        lambda w, c: (_catalog_entity(w, c), {"title": "Changed"}),
        owner="member_a",
        outsiders=("member_b", "viewer"),
    ),
    ("DELETE", "/api/v1/catalog/entities/{kind}/{namespace}/{name}"): Scenario(
        lambda w, c: (_catalog_entity(w, c), None),
        owner="member_a",
        outsiders=("member_b", "viewer"),
    ),
    ("POST", "/api/v1/users"): Scenario(
        lambda w, c: ("/api/v1/users", {"email": f"new{id(w)}@example.com", "display_name": "New"}),
        owner="admin",
        outsiders=("member_a", "sre", "viewer"),
    ),
    ("PATCH", "/api/v1/users/{user_id}"): Scenario(
        lambda w, c: (f"/api/v1/users/{w.ids['member_a']}", {"time_zone": "Europe/Paris"}),
        owner="member_a",
        outsiders=("member_b", "sre", "viewer"),
    ),
    ("PATCH", "/api/v1/me"): Scenario(  # always the caller's own account: no outsider
        lambda w, c: ("/api/v1/me", {"time_zone": "Europe/Paris"}),
        owner="member_a",
        outsiders=(),
    ),
    ("POST", "/api/v1/teams"): Scenario(
        lambda w, c: (
            "/api/v1/teams",
            {"slug": "team-new", "name": "New", "lead_email": _new_user_email(w, c)},
        ),
        owner="sre",
        outsiders=("member_a", "viewer"),
    ),
    ("PATCH", "/api/v1/teams/{slug}"): Scenario(
        lambda w, c: ("/api/v1/teams/team-a", {"description": "changed"}),
        owner="member_a",
        outsiders=("member_b", "viewer"),
    ),
    ("POST", "/api/v1/teams/{slug}/members"): Scenario(
        lambda w, c: ("/api/v1/teams/team-a/members", {"email": _new_user_email(w, c)}),
        owner="member_a",
        outsiders=("member_b", "viewer"),
    ),
    ("DELETE", "/api/v1/teams/{slug}/members/{user_id}"): Scenario(
        lambda w, c: (f"/api/v1/teams/team-a/members/{w.ids['extra_a']}", None),
        owner="member_a",
        outsiders=("member_b", "viewer"),
    ),
    ("POST", "/api/v1/tokens"): Scenario(
        lambda w, c: ("/api/v1/tokens", {"name": "for-a", "user_id": w.ids["member_a"]}),
        owner="member_a",
        outsiders=("member_b", "sre", "viewer"),
    ),
    ("DELETE", "/api/v1/tokens/{token_id}"): Scenario(
        lambda w, c: (f"/api/v1/tokens/{_member_token(w, c)}", None),
        owner="member_a",
        outsiders=("member_b", "sre", "viewer"),
    ),
    ("POST", "/api/v1/webhooks"): Scenario(
        lambda w, c: (
            "/api/v1/webhooks",
            {
                "name": "n",
                "url": "https://example.com/h",
                "event_types": ["team.*"],
                "owner_team": "team-a",
            },
        ),
        owner="member_a",
        outsiders=("member_b", "viewer"),
    ),
    ("PATCH", "/api/v1/webhooks/{subscription_id}"): Scenario(
        lambda w, c: (f"/api/v1/webhooks/{_webhook(w, c)}", {"is_active": False}),
        owner="member_a",
        outsiders=("member_b", "viewer"),
    ),
    ("DELETE", "/api/v1/webhooks/{subscription_id}"): Scenario(
        lambda w, c: (f"/api/v1/webhooks/{_webhook(w, c)}", None),
        owner="member_a",
        outsiders=("member_b", "viewer"),
    ),
    ("POST", "/api/v1/jobs/{job_id}/retry"): Scenario(
        lambda w, c: (f"/api/v1/jobs/{_dead_job(w, c)}/retry", None),
        owner="sre",
        outsiders=("member_a", "viewer"),
    ),
}


# -- self-service (templates, runs, access grants) ---------------------------------------------
def _ss_actor(world: World, key: str) -> Any:
    from lamplighter.core import identity
    from lamplighter.core.context import Actor

    with world.db.sessionmaker() as session:
        user = identity.get_user(session=session, user_id=world.ids[key])
        teams = identity.team_ids_of(session=session, user_id=user.id)
    return Actor(kind="user", label=user.email, user_id=user.id, role=user.role, team_ids=teams)


def _ss_definition(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "title": "Matrix template",
        "owner": "team-a",
        "steps": [
            {"id": "hand_over", "action": "ticket.create", "input": {"type": "other", "title": "x"}}
        ],
        **extra,
    }


def _ss_template(world: World, **extra: Any) -> str:
    from lamplighter.selfservice import templates

    world.ids["ss_templates"] = world.ids.get("ss_templates", 0) + 1
    name = f"matrix-{world.ids['ss_templates']}"
    with world.db.transaction() as session:
        templates.create(session=session, actor=SYSTEM, definition=_ss_definition(name, **extra))
    return name


def _ss_run(
    world: World, *, approval: str = "none", failed: bool = False, secret: bool = False
) -> int:
    from lamplighter.core.crypto import SecretBox
    from lamplighter.selfservice import runs
    from lamplighter.selfservice.models import RunSecret
    from tests.conftest import TEST_SECRET

    name = _ss_template(world, approval=approval)
    requester = _ss_actor(world, "member_a")
    with world.db.transaction() as session:
        run = runs.start(session=session, actor=requester, template_name=name, parameters={})
        if failed:
            run.status = "failed"
            run.error = "step hand_over failed"
        if secret:
            session.add(
                RunSecret(
                    run_id=run.id,
                    name="password",
                    ciphertext=SecretBox(TEST_SECRET.encode()).encrypt("pw-matrix"),
                )
            )
        return int(run.id)


def _ss_entity(world: World, accountable_key: str) -> str:
    from lamplighter.catalog import service as catalog
    from lamplighter.core import identity

    world.ids["ss_entities"] = world.ids.get("ss_entities", 0) + 1
    name = f"matrix-db-{world.ids['ss_entities']}"
    with world.db.transaction() as session:
        email = identity.get_user(session=session, user_id=world.ids[accountable_key]).email
        catalog.create(
            session=session,
            actor=SYSTEM,
            data=catalog.EntityInput(kind="resource", name=name, owner="team-a", accountable=email),
        )
    return f"resource:default/{name}"


def _ss_draft(world: World, member: Any) -> str:
    """A template with a draft waiting for review: member_a asked for a database step."""
    from lamplighter.core import identity
    from lamplighter.core.context import Actor
    from lamplighter.selfservice import templates

    name = _ss_template(world)
    user_id = member if isinstance(member, int) else member.id
    with world.db.transaction() as session:
        user = identity.get_user(session=session, user_id=user_id)
        teams = identity.team_ids_of(session=session, user_id=user.id)
        author = Actor(
            kind="user", label=user.email, user_id=user.id, role=user.role, team_ids=teams
        )
        step = {"id": "db", "action": "postgres.database", "input": {"database": "matrix"}}
        templates.update(
            session=session,
            actor=author,
            name=name,
            definition=_ss_definition(name, steps=[step]),
        )
    return name


def _ss_grant(world: World, *, accountable: str, requester: str) -> int:
    from lamplighter.catalog import service as catalog
    from lamplighter.selfservice import grants

    ref = _ss_entity(world, accountable)
    actor = _ss_actor(world, requester)
    with world.db.transaction() as session:
        entity = catalog.get_by_ref(session=session, ref=ref)
        grant = grants.request_grant(
            session=session,
            actor=actor,
            entity_id=entity.id,
            grantee=grants.Grantee(user_id=actor.user_id),
            access="read",
            reason="matrix",
        )
        return int(grant.id)


SCENARIOS.update(
    {
        # The platform team (SREs, admins) reviews drafts; their author does not.
        ("POST", "/api/v1/templates/{name}/draft/approve"): Scenario(
            lambda w, c: (
                f"/api/v1/templates/{_ss_draft(w, w.ids['member_a'])}/draft/approve",
                {},
            ),
            owner="sre",
            outsiders=("member_a", "member_b", "viewer"),
        ),
        ("POST", "/api/v1/templates/{name}/draft/reject"): Scenario(
            lambda w, c: (
                f"/api/v1/templates/{_ss_draft(w, w.ids['member_a'])}/draft/reject",
                {"reason": "no"},
            ),
            owner="sre",
            outsiders=("member_a", "member_b", "viewer"),
        ),
        ("POST", "/api/v1/templates"): Scenario(
            lambda w, c: ("/api/v1/templates", _ss_definition("matrix-new")),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("PUT", "/api/v1/templates/{name}"): Scenario(
            lambda w, c: (
                f"/api/v1/templates/{_ss_template(w)}",
                _ss_definition(f"matrix-{w.ids['ss_templates']}", title="Changed"),
            ),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("DELETE", "/api/v1/templates/{name}"): Scenario(
            lambda w, c: (f"/api/v1/templates/{_ss_template(w)}", None),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("POST", "/api/v1/templates/{name}/runs"): Scenario(
            lambda w, c: (
                f"/api/v1/templates/{_ss_template(w, allowed_teams=['team-a'])}/runs",
                {"parameters": {}},
            ),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        # An SRE approval: the requester never decides on their own run.
        ("POST", "/api/v1/runs/{run_id}/approve"): Scenario(
            lambda w, c: (f"/api/v1/runs/{_ss_run(w, approval='sre')}/approve", None),
            owner="sre",
            outsiders=("member_a", "member_b", "viewer"),
        ),
        ("POST", "/api/v1/runs/{run_id}/reject"): Scenario(
            lambda w, c: (f"/api/v1/runs/{_ss_run(w, approval='sre')}/reject", {"reason": "no"}),
            owner="sre",
            outsiders=("member_a", "member_b", "viewer"),
        ),
        ("POST", "/api/v1/runs/{run_id}/retry"): Scenario(
            lambda w, c: (f"/api/v1/runs/{_ss_run(w, failed=True)}/retry", None),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        # Secrets go to the requester only: not even an SRE sees them.
        ("POST", "/api/v1/runs/{run_id}/secrets/reveal"): Scenario(
            lambda w, c: (f"/api/v1/runs/{_ss_run(w, secret=True)}/secrets/reveal", None),
            owner="member_a",
            outsiders=("member_b", "sre", "viewer"),
        ),
        # Anyone signed in may ask for access; viewers may not.
        ("POST", "/api/v1/grants"): Scenario(
            lambda w, c: (
                "/api/v1/grants",
                {"entity": _ss_entity(w, "member_a"), "access": "read", "reason": "matrix"},
            ),
            owner="member_b",
            outsiders=("viewer",),
        ),
        ("POST", "/api/v1/grants/{grant_id}/approve"): Scenario(
            lambda w, c: (
                f"/api/v1/grants/{_ss_grant(w, accountable='member_a', requester='extra_a')}/approve",
                None,
            ),
            owner="member_a",
            outsiders=("member_b", "sre", "viewer"),
        ),
        ("POST", "/api/v1/grants/{grant_id}/reject"): Scenario(
            lambda w, c: (
                f"/api/v1/grants/{_ss_grant(w, accountable='member_a', requester='extra_a')}/reject",
                {"reason": "no"},
            ),
            owner="member_a",
            outsiders=("member_b", "sre", "viewer"),
        ),
        ("POST", "/api/v1/grants/{grant_id}/revoke"): Scenario(
            lambda w, c: (
                f"/api/v1/grants/{_ss_grant(w, accountable='extra_a', requester='member_a')}/revoke",
                None,
            ),
            owner="member_a",
            outsiders=("member_b", "sre", "viewer"),
        ),
    }
)


# -- SLOs (issue 13) ---------------------------------------------------------------------------
def _slo_entity(world: World, client: Any) -> str:
    """A new service of team-a; its bare name."""
    return _catalog_entity(world, client).rsplit("/", 1)[-1]


def _slo(world: World, client: Any, *, frozen: bool = False) -> tuple[int, str, str]:
    """An SLO on built-in events of a new team-a service: (id, entity name, ingest key)."""
    from lamplighter.slo import service as slos
    from lamplighter.slo.schemas import SloIn

    name = _slo_entity(world, client)
    with world.db.transaction() as session:
        slo, key = slos.create(
            session=session,
            actor=SYSTEM,
            data=SloIn(entity=name, name="availability", objective=99.9, source="events"),
        )
        if frozen:  # as an evaluation leaves an SLO whose budget is spent
            slo.frozen, slo.budget_remaining = True, 0.0
        assert key is not None
        return int(slo.id), name, key


def _slo_body(entity: str, **fields: Any) -> dict[str, Any]:
    return {
        "entity": entity,
        "name": "availability",
        "objective": 99.9,
        "source": "events",
    } | fields


def _slo_spec(world: World, client: Any) -> dict[str, Any]:
    name = _slo_entity(world, client)
    spec = (
        'version: "prometheus/v1"\n'
        f"service: {name}\n"
        "slos:\n"
        "  - name: availability\n"
        "    objective: 99.9\n"
        "    sli:\n"
        "      events:\n"
        "        error_query: sum(rate(errors_total[{{.window}}]))\n"
        "        total_query: sum(rate(requests_total[{{.window}}]))\n"
        "    alerting: {page_alert: {disable: true}, ticket_alert: {disable: true}}\n"
    )
    return {"files": [{"name": "slos/matrix.yml", "content": spec}]}


def _slo_path(world: World, client: Any, suffix: str = "") -> str:
    slo_id, _, _ = _slo(world, client)
    return f"/api/v1/slos/{slo_id}{suffix}"


def _slo_update(world: World, client: Any) -> tuple[str, dict[str, Any]]:
    slo_id, name, _ = _slo(world, client)
    return f"/api/v1/slos/{slo_id}", _slo_body(name, objective=99.5)


def _slo_freeze_exception(world: World, client: Any) -> tuple[str, dict[str, Any]]:
    _, name, _ = _slo(world, client, frozen=True)
    return "/api/v1/slos/freeze-exceptions", {"entity": name, "reason": "the fix for the outage"}


SCENARIOS.update(
    {
        ("POST", "/api/v1/slos"): Scenario(
            lambda w, c: ("/api/v1/slos", _slo_body(_slo_entity(w, c))),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("PUT", "/api/v1/slos/{slo_id}"): Scenario(
            _slo_update, owner="member_a", outsiders=("member_b", "viewer")
        ),
        ("DELETE", "/api/v1/slos/{slo_id}"): Scenario(
            lambda w, c: (_slo_path(w, c), None),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("POST", "/api/v1/slos/{slo_id}/evaluate"): Scenario(
            lambda w, c: (_slo_path(w, c, "/evaluate"), None),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("POST", "/api/v1/slos/{slo_id}/rotate-key"): Scenario(
            lambda w, c: (_slo_path(w, c, "/rotate-key"), None),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        # Signed-in callers who may change the SLO; the ingest key is checked in its own test.
        ("POST", "/api/v1/slos/{slo_id}/events"): Scenario(
            lambda w, c: (_slo_path(w, c, "/events"), {"good": 9, "total": 10}),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        # Viewers are refused outright; another team's member gets a report whose file is
        # refused, naming the field (tests/slo/test_apply.py), and nothing is written.
        ("POST", "/api/v1/slos/import"): Scenario(
            lambda w, c: ("/api/v1/slos/import", _slo_spec(w, c)),
            owner="member_a",
            outsiders=("viewer",),
        ),
        ("POST", "/api/v1/slos/freeze-exceptions"): Scenario(
            _slo_freeze_exception, owner="member_a", outsiders=("member_b", "viewer")
        ),
    }
)


# -- alerting (issue 14) -----------------------------------------------------------------------
def _integration(world: World, client: Any, kind: str = "alertmanager") -> tuple[int, str]:
    """A new integration on a new team-a service: (id, key)."""
    from lamplighter.alerting import integrations
    from lamplighter.alerting.schemas import IntegrationIn

    name = _slo_entity(world, client)
    with world.db.transaction() as session:
        integration, key = integrations.create(
            session=session,
            actor=SYSTEM,
            data=IntegrationIn(name=f"am-{name}", kind=kind, entity=name),
        )
        return int(integration.id), key


def _alert_group(world: World, client: Any) -> int:
    """An open alert group of team-a (fired through the PagerDuty endpoint)."""
    _, key = _integration(world, client, "pagerduty")
    event = {
        "routing_key": key,
        "event_action": "trigger",
        "payload": {"summary": "disk full", "source": "db-1", "severity": "critical"},
    }
    assert client.post("/v2/enqueue", json=event).status_code == 202
    from lamplighter.alerting.models import AlertGroup

    with world.db.sessionmaker() as session:
        return int(session.scalars(sa.select(AlertGroup.id).order_by(AlertGroup.id.desc())).first())


def _group_path(world: World, client: Any, suffix: str) -> str:
    return f"/api/v1/alerting/groups/{_alert_group(world, client)}{suffix}"


def _silence_body(world: World, client: Any) -> dict[str, Any]:
    import datetime as dt

    ends = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    return {"team": "team-a", "matchers": ["alertname=Disk"], "ends_at": ends, "reason": "upgrade"}


def _silence_path(world: World, client: Any) -> str:
    from lamplighter.alerting import silences
    from lamplighter.alerting.schemas import SilenceIn

    with world.db.transaction() as session:
        silence = silences.create(
            session=session,
            actor=SYSTEM,
            data=SilenceIn.model_validate(_silence_body(world, client)),
        )
        return f"/api/v1/alerting/silences/{silence.id}/expire"


def _maintenance_body(world: World, client: Any) -> dict[str, Any]:
    body = _silence_body(world, client)
    return {"entity": _slo_entity(world, client), "ends_at": body["ends_at"], "reason": "failover"}


SCENARIOS.update(
    {
        ("POST", "/api/v1/alerting/integrations"): Scenario(
            lambda w, c: (
                "/api/v1/alerting/integrations",
                {"name": "am", "kind": "alertmanager", "entity": _slo_entity(w, c)},
            ),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("PATCH", "/api/v1/alerting/integrations/{integration_id}"): Scenario(
            lambda w, c: (
                f"/api/v1/alerting/integrations/{_integration(w, c)[0]}",
                {"group_window_s": 600},
            ),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("DELETE", "/api/v1/alerting/integrations/{integration_id}"): Scenario(
            lambda w, c: (f"/api/v1/alerting/integrations/{_integration(w, c)[0]}", None),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("POST", "/api/v1/alerting/integrations/{integration_id}/rotate-key"): Scenario(
            lambda w, c: (
                f"/api/v1/alerting/integrations/{_integration(w, c)[0]}/rotate-key",
                None,
            ),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("POST", "/api/v1/alerting/groups/{group_id}/acknowledge"): Scenario(
            lambda w, c: (_group_path(w, c, "/acknowledge"), None),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("POST", "/api/v1/alerting/groups/{group_id}/resolve"): Scenario(
            lambda w, c: (_group_path(w, c, "/resolve"), None),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("POST", "/api/v1/alerting/groups/{group_id}/escalate"): Scenario(
            lambda w, c: (_group_path(w, c, "/escalate"), None),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("POST", "/api/v1/alerting/groups/{group_id}/reassign"): Scenario(
            lambda w, c: (_group_path(w, c, "/reassign"), {"user": _new_user_email(w, c)}),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("PUT", "/api/v1/alerting/groups/{group_id}/note"): Scenario(
            lambda w, c: (_group_path(w, c, "/note"), {"body": "Restart the consumer first."}),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("POST", "/api/v1/alerting/silences"): Scenario(
            lambda w, c: ("/api/v1/alerting/silences", _silence_body(w, c)),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("POST", "/api/v1/alerting/silences/{silence_id}/expire"): Scenario(
            lambda w, c: (_silence_path(w, c), None),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("POST", "/api/v1/alerting/maintenance"): Scenario(
            lambda w, c: ("/api/v1/alerting/maintenance", _maintenance_body(w, c)),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
    }
)


# -- on-call schedules (issue 14) ---------------------------------------------------------------
def _oncall_schedule(world: World, client: Any) -> int:
    from lamplighter.oncall import schedules
    from lamplighter.oncall.schedule_schemas import ScheduleCreate

    world.ids["oncall"] = world.ids.get("oncall", 0) + 1
    with world.db.transaction() as session:
        schedule = schedules.create(
            session=session,
            actor=SYSTEM,
            data=ScheduleCreate(team="team-a", name=f"matrix-{world.ids['oncall']}"),
        )
        return int(schedule.id)


def _oncall_override(world: World, client: Any) -> str:
    from lamplighter.oncall import schedules
    from lamplighter.oncall.schedule_schemas import OverrideCreate

    schedule_id = _oncall_schedule(world, client)
    cover = OverrideCreate(
        user_id=world.ids["member_a"],
        starts_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
        ends_at=dt.datetime(2030, 1, 2, tzinfo=dt.UTC),
    )
    with world.db.transaction() as session:
        row = schedules.create_override(
            session=session, actor=SYSTEM, schedule_id=schedule_id, data=cover
        )
        return f"/api/v1/oncall/schedules/{schedule_id}/overrides/{row.id}"


def _oncall_calendar(world: World) -> str:
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    stamp = "%Y%m%dT%H%M%SZ"
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//matrix//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:matrix@example.com\r\nDTSTART:{start:{stamp}}\r\n"
        f"DTEND:{start + dt.timedelta(days=1):{stamp}}\r\n"
        f"X-LAMPLIGHTER-USER:{world.ids['member_a']}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


SCENARIOS.update(
    {
        ("POST", "/api/v1/oncall/schedules"): Scenario(
            lambda w, c: ("/api/v1/oncall/schedules", {"team": "team-a", "name": "matrix"}),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("PATCH", "/api/v1/oncall/schedules/{schedule_id}"): Scenario(
            lambda w, c: (
                f"/api/v1/oncall/schedules/{_oncall_schedule(w, c)}",
                {"description": "x"},
            ),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("DELETE", "/api/v1/oncall/schedules/{schedule_id}"): Scenario(
            lambda w, c: (f"/api/v1/oncall/schedules/{_oncall_schedule(w, c)}", None),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("POST", "/api/v1/oncall/schedules/{schedule_id}/overrides"): Scenario(
            lambda w, c: (
                f"/api/v1/oncall/schedules/{_oncall_schedule(w, c)}/overrides",
                {
                    "user_id": w.ids["member_a"],
                    "starts_at": "2030-01-01T00:00:00Z",
                    "ends_at": "2030-01-02T00:00:00Z",
                },
            ),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("DELETE", "/api/v1/oncall/schedules/{schedule_id}/overrides/{override_id}"): Scenario(
            lambda w, c: (_oncall_override(w, c), None),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("POST", "/api/v1/oncall/schedules/{schedule_id}/import-ics"): Scenario(
            lambda w, c: (
                f"/api/v1/oncall/schedules/{_oncall_schedule(w, c)}/import-ics",
                {"layer": "vendor", "content": _oncall_calendar(w)},
            ),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("POST", "/api/v1/oncall/schedules/{schedule_id}/feed-token"): Scenario(
            lambda w, c: (f"/api/v1/oncall/schedules/{_oncall_schedule(w, c)}/feed-token", None),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        # Always the caller's own feed: no outsider (viewers have one too).
        ("POST", "/api/v1/oncall/me/feed-token"): Scenario(
            lambda w, c: ("/api/v1/oncall/me/feed-token", None), owner="member_a", outsiders=()
        ),
    }
)


def _oncall_policy(world: World, client: Any) -> str:
    from lamplighter.oncall import policies

    world.ids["policies"] = world.ids.get("policies", 0) + 1
    with world.db.transaction() as session:
        team = policies.team_by_slug(session=session, slug="team-a")
        policy = policies.create(
            session=session,
            actor=SYSTEM,
            team_id=team.id,
            name=f"matrix-{world.ids['policies']}",
            tiers=[
                {"delay_minutes": 5, "targets": [{"type": "user", "id": world.ids["member_a"]}]}
            ],
        )
        return f"/api/v1/oncall/escalation-policies/{policy.id}"


def _my_method(world: World, client: Any, kind: str = "inbox") -> int:
    body: dict[str, Any] = {"kind": kind}
    if kind == "email":
        body["address"] = "matrix@example.com"
    answer = client.post(
        "/api/v1/oncall/me/contact-methods", json=body, headers=auth(world.tokens["member_a"])
    )
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def _my_rule(world: World, client: Any) -> str:
    method_id = _my_method(world, client, "email")
    answer = client.post(
        "/api/v1/oncall/me/notification-rules",
        json={"contact_method_id": method_id, "delay_minutes": 5},
        headers=auth(world.tokens["member_a"]),
    )
    assert answer.status_code == 201, answer.text
    return f"/api/v1/oncall/me/notification-rules/{answer.json()['id']}"


SCENARIOS.update(
    {
        ("POST", "/api/v1/oncall/escalation-policies"): Scenario(
            lambda w, c: (
                "/api/v1/oncall/escalation-policies",
                {
                    "team": "team-a",
                    "name": "Team A",
                    "tiers": [
                        {"delay_minutes": 5, "targets": [{"type": "user", "id": w.ids["member_a"]}]}
                    ],
                },
            ),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("PATCH", "/api/v1/oncall/escalation-policies/{policy_id}"): Scenario(
            lambda w, c: (_oncall_policy(w, c), {"repeat": 2}),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("DELETE", "/api/v1/oncall/escalation-policies/{policy_id}"): Scenario(
            lambda w, c: (_oncall_policy(w, c), None),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        # Always the caller's own methods and rules: nobody else's to refuse.
        ("POST", "/api/v1/oncall/me/contact-methods"): Scenario(
            lambda w, c: (
                "/api/v1/oncall/me/contact-methods",
                {"kind": "email", "address": "a@example.com"},
            ),
            owner="member_a",
            outsiders=(),
        ),
        ("PATCH", "/api/v1/oncall/me/contact-methods/{method_id}"): Scenario(
            lambda w, c: (
                f"/api/v1/oncall/me/contact-methods/{_my_method(w, c)}",
                {"label": "Work"},
            ),
            owner="member_a",
            outsiders=("member_b", "sre", "viewer"),
        ),
        ("DELETE", "/api/v1/oncall/me/contact-methods/{method_id}"): Scenario(
            lambda w, c: (f"/api/v1/oncall/me/contact-methods/{_my_method(w, c)}", None),
            owner="member_a",
            outsiders=("member_b", "sre", "viewer"),
        ),
        ("POST", "/api/v1/oncall/me/contact-methods/{method_id}/test"): Scenario(
            lambda w, c: (f"/api/v1/oncall/me/contact-methods/{_my_method(w, c)}/test", None),
            owner="member_a",
            outsiders=("member_b", "sre", "viewer"),
        ),
        ("POST", "/api/v1/oncall/me/notification-rules"): Scenario(
            lambda w, c: (
                "/api/v1/oncall/me/notification-rules",
                {"contact_method_id": _my_method(w, c, "email"), "delay_minutes": 0},
            ),
            owner="member_a",
            outsiders=(),
        ),
        ("DELETE", "/api/v1/oncall/me/notification-rules/{rule_id}"): Scenario(
            lambda w, c: (_my_rule(w, c), None),
            owner="member_a",
            outsiders=("member_b", "sre", "viewer"),
        ),
    }
)


# Ingest endpoints authenticate by the integration key alone (the documented public ingest):
# no session, no token. ``test_ingest_routes_take_only_their_integration_key`` covers them.
INGEST_BY_KEY = {
    ("POST", "/api/v1/alerting/ingest/alertmanager/{key}"),
    ("POST", "/api/v1/alerting/ingest/alertmanager"),
    ("POST", "/api/v1/alerting/ingest/generic/{key}"),
    ("POST", "/api/v1/alerting/heartbeat/{key}"),
}


def test_ingest_routes_take_only_their_integration_key(client: Any, db: Any) -> None:
    """Without the key (or with a user's token in its place) every ingest route is 401 and
    stores nothing; with the key of another kind of integration too."""
    world = build_world(db)
    _, am_key = _integration(world, client)
    _, pd_key = _integration(world, client, "pagerduty")
    from tests.alerting.fixtures_org import am_body

    body = am_body()
    for path in (
        "/api/v1/alerting/ingest/alertmanager/nope",
        f"/api/v1/alerting/ingest/alertmanager/{pd_key}",
        "/api/v1/alerting/ingest/generic/nope",
        f"/api/v1/alerting/heartbeat/{am_key}",
    ):
        refused = client.post(path, json=body)
        assert refused.status_code == 401, (path, refused.text)
    bearer = client.post(
        "/api/v1/alerting/ingest/alertmanager",
        json=body,
        headers=auth(world.tokens["admin"]),
    )
    assert bearer.status_code == 401  # a person's token is not an integration key
    assert (
        client.post(f"/api/v1/alerting/ingest/alertmanager/{am_key}", json=body).status_code == 202
    )


# Allowed writes that are measurements, not changes: no audit entry each (a batch of points a
# minute would drown the audit log). Who may send them is still checked above.
UNAUDITED = {
    (
        "POST",
        "/api/v1/slos/{slo_id}/events",
    ): "counter points; the ingest key's rotation is audited",
}


def test_slo_events_take_the_ingest_key_without_credentials(client: Any, db: Any) -> None:
    """The one write open without a session or token: an SLO's built-in events, with its key."""
    world = build_world(db)
    slo_id, _, key = _slo(world, client)
    path, point = f"/api/v1/slos/{slo_id}/events", {"good": 9, "total": 10}
    accepted = client.post(path, json=point, headers={"X-Lamplighter-Ingest-Key": key})
    assert accepted.status_code == 200, accepted.text
    for wrong in ("llslo_wrong", key + "x"):
        refused = client.post(path, json=point, headers={"X-Lamplighter-Ingest-Key": wrong})
        assert refused.status_code == 401
        assert refused.headers["content-type"].startswith("application/problem+json")
    other_id, _, _ = _slo(world, client)  # a key opens its own SLO only
    other = client.post(
        f"/api/v1/slos/{other_id}/events", json=point, headers={"X-Lamplighter-Ingest-Key": key}
    )
    assert other.status_code == 401


def mutating_api_routes(app: Any) -> set[tuple[str, str]]:
    found = set()
    for path, route in walk_routes(list(app.routes)):
        if not path.startswith("/api/"):
            continue
        for method in getattr(route, "methods", None) or ():
            if method in MUTATING:
                found.add((method, path))
    return found


def test_every_mutating_route_has_a_scenario(app: Any) -> None:
    routes = mutating_api_routes(app)
    assert routes, "the route walker found no API routes"
    missing = sorted(routes - set(SCENARIOS) - INGEST_BY_KEY)
    assert not missing, f"add an authorization scenario for: {missing}"


def _audit_count(db: Any) -> int:
    with db.sessionmaker() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) or 0)


def _send(
    client: Any, method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]
) -> Any:
    return client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("route", sorted(SCENARIOS), ids=lambda r: f"{r[0]} {r[1]}")
def test_route_authorization(route: tuple[str, str], client: Any, db: Any) -> None:
    method, _ = route
    scenario = SCENARIOS[route]
    world = build_world(db)
    path, body = scenario.prepare(world, client)
    before = _audit_count(db)

    anonymous = _send(client, method, path, body, {})
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.headers["content-type"].startswith("application/problem+json")
    bad_token = _send(client, method, path, body, auth("llt_not-a-real-token"))
    assert bad_token.status_code == 401

    for outsider in scenario.outsiders:
        response = _send(client, method, path, body, auth(world.tokens[outsider]))
        assert response.status_code == 403, f"{outsider}: {response.status_code} {response.text}"
        assert response.json()["status"] == 403
    assert _audit_count(db) == before, "a refused request changed something"

    allowed = _send(client, method, path, body, auth(world.tokens[scenario.owner]))
    assert 200 <= allowed.status_code < 300, allowed.text
    if route not in UNAUDITED:
        assert _audit_count(db) > before, "an allowed mutation left no audit entry"


def test_every_read_route_needs_authentication(app: Any, client: Any, db: Any) -> None:
    """Reads are open to everyone signed in, never to anonymous callers."""
    for path, route in walk_routes(list(app.routes)):
        if not path.startswith("/api/v1/") or "GET" not in (getattr(route, "methods", None) or ()):
            continue
        if path == "/api/v1/openapi.json":
            continue
        concrete = (
            path.replace("{slug}", "x")
            .replace("{user_id}", "1")
            .replace("{subscription_id}", "1")
            .replace("{token_id}", "1")
            .replace("{job_id}", "1")
            .replace("{kind}", "service")
            .replace("{namespace}", "default")
            .replace("{name}", "x")
            .replace("{ticket_id}", "1")
            .replace("{item_id}", "1")
            .replace("{run_id}", "1")
            .replace("{grant_id}", "1")
            .replace("{slo_id}", "1")
            .replace("{integration_id}", "1")
            .replace("{group_id}", "1")
            .replace("{silence_id}", "1")
            .replace("{schedule_id}", "1")
            .replace("{policy_id}", "1")
            .replace("{override_id}", "1")
            .replace("{method_id}", "1")
            .replace("{rule_id}", "1")
        )
        response = client.get(concrete)
        assert response.status_code == 401, (
            f"GET {path} answered {response.status_code} without credentials"
        )


def test_viewer_reads_but_never_writes(client: Any, db: Any) -> None:
    viewer = make_user(db, role="viewer")
    lead = make_user(db)
    make_team(db, slug="readable", lead=lead)
    token = make_token(db, viewer)
    assert client.get("/api/v1/teams/readable", headers=auth(token)).status_code == 200
    assert (
        client.patch("/api/v1/teams/readable", json={"name": "x"}, headers=auth(token)).status_code
        == 403
    )
    assert SYSTEM.role == "admin"


# -- the web UI's form routes -------------------------------------------------------------------
# Page POSTs authenticate by session cookie and need the session's CSRF token in the form.
PASSWORD = "matrix-password-123"
PAGE_EXEMPT = {
    ("POST", "/login"): "the sign-in form itself; guarded by its own double-submit CSRF cookie",
    ("POST", "/logout"): "ends the caller's own session; harmless without one",
}


def build_page_world(db: Any) -> World:
    world = World(db=db)
    people = {
        "admin": make_user(db, role="admin", password=PASSWORD),
        "sre": make_user(db, role="sre", password=PASSWORD),
        "member_a": make_user(db, password=PASSWORD),
        "extra_a": make_user(db, password=PASSWORD),
        "member_b": make_user(db, password=PASSWORD),
        "viewer": make_user(db, role="viewer", password=PASSWORD),
    }
    make_team(
        db, slug="team-a", lead=make_user(db), members=[people["member_a"], people["extra_a"]]
    )
    make_team(db, slug="team-b", lead=people["member_b"])
    world.ids.update({name: user for name, user in people.items()})
    return world


def _signed_in(app: Any, email: str) -> tuple[Any, str]:
    import re

    from fastapi.testclient import TestClient

    browser = TestClient(app, base_url="http://testserver")
    form = browser.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    signed = browser.post(
        "/login",
        data={"email": email, "password": PASSWORD, "csrf_token": token, "next": "/"},
        follow_redirects=False,
    )
    assert signed.status_code == 303, signed.text
    home = browser.get("/").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', home).group(1)  # type: ignore[union-attr]
    return browser, csrf


def _page_token_of(world: World, app: Any) -> int:
    with world.db.transaction() as session:
        from lamplighter.core import identity

        token, _ = identity.create_token(
            session=session, actor=SYSTEM, user_id=world.ids["member_a"].id, name="page"
        )
        return int(token.id)


def _page_entity(world: World, app: Any) -> str:
    from lamplighter.catalog import service as catalog

    world.ids["page_entities"] = world.ids.get("page_entities", 0) + 1
    name = f"page-svc-{world.ids['page_entities']}"
    with world.db.transaction() as session:
        catalog.create(
            session=session,
            actor=SYSTEM,
            data=catalog.EntityInput(kind="service", name=name, owner="team-a"),
        )
    return f"/catalog/service/default/{name}"


TYPE_FORM = {
    "name": "Kafka ACL",
    "expected_effort": "15m",
    "is_active": "on",
    **{f"p{n}_first": "1h" for n in range(1, 5)},
    **{f"p{n}_done": "1d" for n in range(1, 5)},
}


def _page_inbox_item(world: World, app: Any) -> int:
    from lamplighter.core import inbox

    with world.db.transaction() as session:
        return int(
            inbox.notify(session=session, user_id=world.ids["member_a"].id, title="hello").id
        )


PAGE_SCENARIOS: dict[tuple[str, str], Scenario] = {
    ("POST", "/tickets"): Scenario(
        lambda w, a: ("/tickets", {"type": "database", "title": "From the page"}),
        owner="member_a",
        outsiders=("viewer",),
    ),
    ("POST", "/tickets/{ticket_id}/transitions"): Scenario(
        lambda w, a: (f"/tickets/{_team_a_ticket(w, a)}/transitions", {"status": "triaged"}),
        owner="member_a",
        outsiders=("member_b", "viewer"),
    ),
    ("POST", "/tickets/{ticket_id}/update"): Scenario(
        lambda w, a: (f"/tickets/{_team_a_ticket(w, a)}/update", {"priority": "P1"}),
        owner="member_a",
        outsiders=("member_b", "viewer"),
    ),
    ("POST", "/tickets/{ticket_id}/comments"): Scenario(
        lambda w, a: (f"/tickets/{_team_a_ticket(w, a)}/comments", {"body": "On it"}),
        owner="member_a",
        outsiders=("member_b", "viewer"),
    ),
    ("POST", "/tickets/{ticket_id}/work-logs"): Scenario(
        lambda w, a: (f"/tickets/{_team_a_ticket(w, a)}/work-logs", {"minutes": "25"}),
        owner="member_a",
        outsiders=("member_b", "viewer"),
    ),
    ("POST", "/tickets/types"): Scenario(
        lambda w, a: ("/tickets/types", TYPE_FORM | {"slug": "kafka-acl"}),
        owner="sre",
        outsiders=("member_a", "viewer"),
    ),
    ("POST", "/tickets/types/{slug}"): Scenario(
        lambda w, a: ("/tickets/types/database", TYPE_FORM | {"name": "Database"}),
        owner="sre",
        outsiders=("member_a", "viewer"),
    ),
    ("POST", "/inbox/{item_id}/read"): Scenario(
        lambda w, a: (f"/inbox/{_page_inbox_item(w, a)}/read", {}),
        owner="member_a",
        outsiders=("member_b", "sre", "viewer"),
    ),
    ("POST", "/catalog"): Scenario(
        lambda w, a: (
            "/catalog",
            {
                "kind": "service",
                "name": "from-page",
                "owner": "team-a",
                "lifecycle": "production",
                "tier": "3",
            },
        ),
        owner="member_a",
        outsiders=("member_b", "viewer"),
    ),
    ("POST", "/catalog/{kind}/{namespace}/{name}/edit"): Scenario(
        lambda w, a: (
            _page_entity(w, a) + "/edit",
            {"title": "Changed", "owner": "team-a", "lifecycle": "production", "tier": "3"},
        ),
        owner="member_a",
        outsiders=("member_b", "viewer"),
    ),
    ("POST", "/catalog/{kind}/{namespace}/{name}/delete"): Scenario(
        lambda w, a: (_page_entity(w, a) + "/delete", {}),
        owner="member_a",
        outsiders=("member_b", "viewer"),
    ),
    ("POST", "/teams"): Scenario(
        lambda w, a: (
            "/teams",
            {"slug": "from-page", "name": "From page", "lead_email": make_user(w.db).email},
        ),
        owner="sre",
        outsiders=("member_a", "viewer"),
    ),
    ("POST", "/people"): Scenario(
        lambda w, a: (
            "/people",
            {
                "email": f"page-person-{id(w)}@example.com",
                "role": "member",
                "time_zone": "UTC",
                "password": "a first password",
            },
        ),
        owner="admin",
        outsiders=("member_a", "sre", "viewer"),
    ),
    ("POST", "/teams/{slug}/members"): Scenario(
        lambda w, a: ("/teams/team-a/members", {"email": make_user(w.db).email}),
        owner="member_a",
        outsiders=("member_b", "viewer"),
    ),
    ("POST", "/teams/{slug}/members/{user_id}/remove"): Scenario(
        lambda w, a: (f"/teams/team-a/members/{w.ids['extra_a'].id}/remove", {}),
        owner="member_a",
        outsiders=("member_b", "viewer"),
    ),
    # Your own tokens: there is no outsider, and viewers may hold read-only tokens.
    ("POST", "/profile/password"): Scenario(  # always the caller's own password
        lambda w, a: (
            "/profile/password",
            {"current_password": PASSWORD, "new_password": "a new and longer passphrase"},
        ),
        owner="member_a",
        outsiders=(),
    ),
    ("POST", "/profile/tokens"): Scenario(
        lambda w, a: ("/profile/tokens", {"name": "mine"}), owner="member_a", outsiders=()
    ),
    ("POST", "/profile/tokens/{token_id}/revoke"): Scenario(
        lambda w, a: (f"/profile/tokens/{_page_token_of(w, a)}/revoke", {}),
        owner="member_a",
        outsiders=("member_b", "sre", "viewer"),
    ),
    ("POST", "/jobs/{job_id}/retry"): Scenario(
        lambda w, a: (f"/jobs/{_dead_job(w, a)}/retry", {}),
        owner="sre",
        outsiders=("member_a", "viewer"),
    ),
}


# -- self-service pages: the page world holds User rows in ids, and the app's own secret box ----
def _ss_page_run(
    world: World, app: Any, *, approval: str = "none", failed: bool = False, secret: bool = False
) -> int:
    from lamplighter.core import identity
    from lamplighter.core.context import Actor
    from lamplighter.selfservice import runs
    from lamplighter.selfservice.models import RunSecret

    name = _ss_template(world, approval=approval)
    user = world.ids["member_a"]
    with world.db.transaction() as session:
        teams = identity.team_ids_of(session=session, user_id=user.id)
        requester = Actor(
            kind="user", label=user.email, user_id=user.id, role=user.role, team_ids=teams
        )
        run = runs.start(session=session, actor=requester, template_name=name, parameters={})
        if failed:
            run.status = "failed"
            run.error = "step hand_over failed"
        if secret:
            box = app.state.box
            session.add(
                RunSecret(run_id=run.id, name="password", ciphertext=box.encrypt("pw-matrix"))
            )
        return int(run.id)


def _ss_page_entity(world: World, accountable: str) -> str:
    from lamplighter.catalog import service as catalog

    world.ids["ss_entities"] = world.ids.get("ss_entities", 0) + 1
    name = f"page-db-{world.ids['ss_entities']}"
    with world.db.transaction() as session:
        catalog.create(
            session=session,
            actor=SYSTEM,
            data=catalog.EntityInput(
                kind="resource", name=name, owner="team-a", accountable=world.ids[accountable].email
            ),
        )
    return f"resource:default/{name}"


def _ss_page_grant(world: World, *, accountable: str, requester: str) -> int:
    from lamplighter.catalog import service as catalog
    from lamplighter.core import identity
    from lamplighter.core.context import Actor
    from lamplighter.selfservice import grants

    ref = _ss_page_entity(world, accountable)
    user = world.ids[requester]
    with world.db.transaction() as session:
        teams = identity.team_ids_of(session=session, user_id=user.id)
        actor = Actor(
            kind="user", label=user.email, user_id=user.id, role=user.role, team_ids=teams
        )
        entity = catalog.get_by_ref(session=session, ref=ref)
        grant = grants.request_grant(
            session=session,
            actor=actor,
            entity_id=entity.id,
            grantee=grants.Grantee(user_id=user.id),
            access="read",
            reason="matrix",
        )
        return int(grant.id)


PAGE_SCENARIOS.update(
    {
        ("POST", "/selfservice/templates/{name}/draft/approve"): Scenario(
            lambda w, a: (
                f"/selfservice/templates/{_ss_draft(w, w.ids['member_a'])}/draft/approve",
                {},
            ),
            owner="sre",
            outsiders=("member_a", "member_b", "viewer"),
        ),
        ("POST", "/selfservice/templates/{name}/draft/reject"): Scenario(
            lambda w, a: (
                f"/selfservice/templates/{_ss_draft(w, w.ids['member_a'])}/draft/reject",
                {"reason": "no"},
            ),
            owner="sre",
            outsiders=("member_a", "member_b", "viewer"),
        ),
        ("POST", "/selfservice/templates/{name}"): Scenario(
            lambda w, a: (
                f"/selfservice/templates/{_ss_template(w, allowed_teams=['team-a'])}",
                {"mode": "run"},
            ),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        # An SRE approval: the requester never decides on their own run.
        ("POST", "/selfservice/runs/{run_id}/approve"): Scenario(
            lambda w, a: (f"/selfservice/runs/{_ss_page_run(w, a, approval='sre')}/approve", {}),
            owner="sre",
            outsiders=("member_a", "member_b", "viewer"),
        ),
        ("POST", "/selfservice/runs/{run_id}/reject"): Scenario(
            lambda w, a: (
                f"/selfservice/runs/{_ss_page_run(w, a, approval='sre')}/reject",
                {"reason": "no"},
            ),
            owner="sre",
            outsiders=("member_a", "member_b", "viewer"),
        ),
        ("POST", "/selfservice/runs/{run_id}/retry"): Scenario(
            lambda w, a: (f"/selfservice/runs/{_ss_page_run(w, a, failed=True)}/retry", {}),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        # Secrets go to the requester only: not even an SRE sees them.
        ("POST", "/selfservice/runs/{run_id}/secrets"): Scenario(
            lambda w, a: (f"/selfservice/runs/{_ss_page_run(w, a, secret=True)}/secrets", {}),
            owner="member_a",
            outsiders=("member_b", "sre", "viewer"),
        ),
        ("POST", "/selfservice/access/{grant_id}/approve"): Scenario(
            lambda w, a: (
                f"/selfservice/access/{_ss_page_grant(w, accountable='member_a', requester='extra_a')}/approve",
                {},
            ),
            owner="member_a",
            outsiders=("member_b", "sre", "viewer"),
        ),
        ("POST", "/selfservice/access/{grant_id}/reject"): Scenario(
            lambda w, a: (
                f"/selfservice/access/{_ss_page_grant(w, accountable='member_a', requester='extra_a')}/reject",
                {"reason": "no"},
            ),
            owner="member_a",
            outsiders=("member_b", "sre", "viewer"),
        ),
        ("POST", "/selfservice/access/{grant_id}/revoke"): Scenario(
            lambda w, a: (
                f"/selfservice/access/{_ss_page_grant(w, accountable='extra_a', requester='member_a')}/revoke",
                {},
            ),
            owner="member_a",
            outsiders=("member_b", "sre", "viewer"),
        ),
    }
)


def _slo_form(entity: str, **fields: str) -> dict[str, str]:
    return {
        "entity": entity,
        "name": "availability",
        "objective": "99.9",
        "window": "30d",
        "time_zone": "UTC",
        "source": "events",
        "budgeting": "occurrences",
        "page": "on",
        "ticket": "on",
        "min_events": "0",
    } | fields


def _slo_page(world: World, app: Any, suffix: str, *, frozen: bool = False) -> str:
    slo_id, _, _ = _slo(world, app, frozen=frozen)
    return f"/slos/{slo_id}{suffix}"


def _slo_edit_page(world: World, app: Any) -> tuple[str, dict[str, str]]:
    slo_id, name, _ = _slo(world, app)
    return f"/slos/{slo_id}/edit", _slo_form(name, objective="99.5")


PAGE_SCENARIOS.update(
    {
        ("POST", "/slos"): Scenario(
            lambda w, a: ("/slos", _slo_form(_slo_entity(w, a))),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("POST", "/slos/{slo_id}/edit"): Scenario(
            _slo_edit_page, owner="member_a", outsiders=("member_b", "viewer")
        ),
        ("POST", "/slos/{slo_id}/delete"): Scenario(
            lambda w, a: (_slo_page(w, a, "/delete"), {}),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("POST", "/slos/{slo_id}/evaluate"): Scenario(
            lambda w, a: (_slo_page(w, a, "/evaluate"), {}),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("POST", "/slos/{slo_id}/rotate-key"): Scenario(
            lambda w, a: (_slo_page(w, a, "/rotate-key"), {}),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
        ("POST", "/slos/{slo_id}/exception"): Scenario(
            lambda w, a: (
                _slo_page(w, a, "/exception", frozen=True),
                {"reason": "the fix for the outage"},
            ),
            owner="member_a",
            outsiders=("member_b", "viewer"),
        ),
    }
)


# -- the frontline pages (issue 14) ---------------------------------------------------------------
def _page_integration(world: World, app: Any) -> tuple[int, str]:
    from lamplighter.alerting import integrations
    from lamplighter.alerting.schemas import IntegrationIn

    world.ids["page_integrations"] = world.ids.get("page_integrations", 0) + 1
    data = IntegrationIn(
        name=f"page-{world.ids['page_integrations']}", kind="pagerduty", team="team-a"
    )
    with world.db.transaction() as session:
        integration, key = integrations.create(session=session, actor=SYSTEM, data=data)
        return int(integration.id), key


def _page_alert_group(world: World, app: Any) -> int:
    """A triggered alert group of team-a, sent in as PagerDuty would."""
    from fastapi.testclient import TestClient

    from lamplighter.alerting.models import AlertGroup

    _, key = _page_integration(world, app)
    event = {
        "routing_key": key,
        "event_action": "trigger",
        "dedup_key": "disk-full",
        "payload": {"summary": "Disk full", "source": "db-1", "severity": "critical"},
    }
    sent = TestClient(app, base_url="http://testserver").post("/v2/enqueue", json=event)
    assert sent.status_code == 202, sent.text
    with world.db.sessionmaker() as session:
        return int(session.scalar(sa.select(sa.func.max(AlertGroup.id))))


def _page_group(
    world: World, app: Any, action: str, form: dict[str, str]
) -> tuple[str, dict[str, str]]:
    return f"/alerts/groups/{_page_alert_group(world, app)}/{action}", form


def _page_silence(world: World, app: Any) -> int:
    from lamplighter.alerting import silences
    from lamplighter.alerting.schemas import SilenceIn
    from lamplighter.core.db import utcnow

    data = SilenceIn(
        team="team-a",
        matchers=["alertname=DiskFull"],
        ends_at=utcnow() + dt.timedelta(hours=2),
        reason="matrix",
    )
    with world.db.transaction() as session:
        return int(silences.create(session=session, actor=SYSTEM, data=data).id)


SILENCE_FORM = {"matchers": "alertname=DiskFull", "ends_in": "2h", "reason": "matrix"}
OWNED_BY_TEAM_A: dict[str, Any] = {"owner": "member_a", "outsiders": ("member_b", "viewer")}
PAGE_SCENARIOS.update(
    {
        ("POST", "/alerts/groups/{group_id}/acknowledge"): Scenario(
            lambda w, a: _page_group(w, a, "acknowledge", {}), **OWNED_BY_TEAM_A
        ),
        ("POST", "/alerts/groups/{group_id}/resolve"): Scenario(
            lambda w, a: _page_group(w, a, "resolve", {}), **OWNED_BY_TEAM_A
        ),
        ("POST", "/alerts/groups/{group_id}/escalate"): Scenario(
            lambda w, a: _page_group(w, a, "escalate", {}), **OWNED_BY_TEAM_A
        ),
        ("POST", "/alerts/groups/{group_id}/reassign"): Scenario(
            lambda w, a: _page_group(w, a, "reassign", {"user": w.ids["extra_a"].email}),
            **OWNED_BY_TEAM_A,
        ),
        ("POST", "/alerts/groups/{group_id}/note"): Scenario(
            lambda w, a: _page_group(w, a, "note", {"note": "Free some space on db-1."}),
            **OWNED_BY_TEAM_A,
        ),
        ("POST", "/alerts/groups/{group_id}/silence"): Scenario(
            lambda w, a: _page_group(w, a, "silence", SILENCE_FORM), **OWNED_BY_TEAM_A
        ),
        ("POST", "/alerts/integrations"): Scenario(
            lambda w, a: (
                "/alerts/integrations",
                {"name": "from-page", "kind": "alertmanager", "owner_team": "team-a"},
            ),
            **OWNED_BY_TEAM_A,
        ),
        ("POST", "/alerts/integrations/{integration_id}/rotate-key"): Scenario(
            lambda w, a: (f"/alerts/integrations/{_page_integration(w, a)[0]}/rotate-key", {}),
            **OWNED_BY_TEAM_A,
        ),
        ("POST", "/alerts/integrations/{integration_id}/delete"): Scenario(
            lambda w, a: (f"/alerts/integrations/{_page_integration(w, a)[0]}/delete", {}),
            **OWNED_BY_TEAM_A,
        ),
        ("POST", "/alerts/silences"): Scenario(
            lambda w, a: ("/alerts/silences", {"team": "team-a", **SILENCE_FORM}),
            **OWNED_BY_TEAM_A,
        ),
        ("POST", "/alerts/maintenance"): Scenario(
            lambda w, a: (
                "/alerts/maintenance",
                {
                    "entity": _page_entity(w, a).removeprefix("/catalog/").replace("/", ":", 1),
                    "window_ends_in": "1h",
                    "window_reason": "matrix",
                },
            ),
            **OWNED_BY_TEAM_A,
        ),
        ("POST", "/alerts/silences/{silence_id}/expire"): Scenario(
            lambda w, a: (f"/alerts/silences/{_page_silence(w, a)}/expire", {}),
            **OWNED_BY_TEAM_A,
        ),
    }
)


# -- the on-call pages: schedules, policies, my contact methods ----------------------------------
def _page_schedule(world: World, app: Any) -> int:
    from lamplighter.oncall import schedules
    from lamplighter.oncall.schedule_schemas import ScheduleCreate

    world.ids["page_schedules"] = world.ids.get("page_schedules", 0) + 1
    data = ScheduleCreate(team="team-a", name=f"page-{world.ids['page_schedules']}")
    with world.db.transaction() as session:
        return int(schedules.create(session=session, actor=SYSTEM, data=data).id)


def _page_my_method(world: World, app: Any) -> int:
    """An email method of member_a's, made through the service."""
    from lamplighter.oncall import contacts

    world.ids["page_methods"] = world.ids.get("page_methods", 0) + 1
    with world.db.transaction() as session:
        method = contacts.create_method(
            session=session,
            actor=SYSTEM,
            user_id=world.ids["member_a"].id,
            kind="email",
            box=app.state.box,
            address=f"page-{world.ids['page_methods']}@example.com",
        )
        return int(method.id)


def _page_my_rule(world: World, app: Any) -> int:
    from lamplighter.oncall import contacts

    method_id = _page_my_method(world, app)
    with world.db.transaction() as session:
        rule = contacts.create_rule(
            session=session,
            actor=SYSTEM,
            user_id=world.ids["member_a"].id,
            contact_method_id=method_id,
            delay_minutes=5,
        )
        return int(rule.id)


# Only ever the viewer's own methods and rules: nobody else's to create; a delete of someone
# else's is refused (403, "someone else's"), even for SREs and admins on this /me page.
MINE_ONLY: dict[str, Any] = {"owner": "member_a", "outsiders": ("member_b", "sre", "viewer")}
PAGE_SCENARIOS.update(
    {
        ("POST", "/oncall/schedules/{schedule_id}/overrides"): Scenario(
            lambda w, a: (
                f"/oncall/schedules/{_page_schedule(w, a)}/overrides",
                {
                    "user": w.ids["member_a"].email,
                    "starts": "2030-01-01 00:00",
                    "ends": "2030-01-02T00:00:00+00:00",
                    "reason": "matrix",
                },
            ),
            **OWNED_BY_TEAM_A,
        ),
        ("POST", "/oncall/me/contacts/methods"): Scenario(
            lambda w, a: ("/oncall/me/contacts/methods", {"address": "page@example.com"}),
            owner="member_a",
            outsiders=(),
        ),
        ("POST", "/oncall/me/contacts/methods/{method_id}/delete"): Scenario(
            lambda w, a: (f"/oncall/me/contacts/methods/{_page_my_method(w, a)}/delete", {}),
            **MINE_ONLY,
        ),
        ("POST", "/oncall/me/contacts/rules"): Scenario(
            lambda w, a: (
                "/oncall/me/contacts/rules",
                {"contact_method_id": str(_page_my_method(w, a)), "delay_minutes": "5"},
            ),
            owner="member_a",
            outsiders=(),
        ),
        ("POST", "/oncall/me/contacts/rules/{rule_id}/delete"): Scenario(
            lambda w, a: (f"/oncall/me/contacts/rules/{_page_my_rule(w, a)}/delete", {}),
            **MINE_ONLY,
        ),
    }
)
PAGE_EXEMPT[("POST", "/alerts/act/{token}")] = (
    "a signed one-click link from a notification: the token is the authorization (one action "
    "on one group as the person it was sent to); no session, no CSRF"
)
PAGE_EXEMPT[("POST", "/v2/enqueue")] = (
    "PagerDuty Events API v2 ingest, authenticated by the integration key in routing_key "
    "(tests/alerting/test_ingest.py)"
)


def mutating_page_routes(app: Any) -> set[tuple[str, str]]:
    found = set()
    for path, route in walk_routes(list(app.routes)):
        if path.startswith("/api/"):
            continue
        for method in getattr(route, "methods", None) or ():
            if method in MUTATING:
                found.add((method, path))
    return found


def test_every_mutating_page_route_has_a_scenario(app: Any) -> None:
    routes = mutating_page_routes(app)
    assert ("POST", "/teams") in routes
    missing = sorted(routes - set(PAGE_SCENARIOS) - set(PAGE_EXEMPT))
    assert not missing, f"add an authorization scenario for: {missing}"


@pytest.mark.parametrize("route", sorted(PAGE_SCENARIOS), ids=lambda r: f"page {r[0]} {r[1]}")
def test_page_route_authorization(route: tuple[str, str], app: Any, client: Any, db: Any) -> None:
    method, _ = route
    scenario = PAGE_SCENARIOS[route]
    world = build_page_world(db)
    path, form = scenario.prepare(world, app)
    before = _audit_count(db)

    anonymous = client.request(method, path, data=form, follow_redirects=False)
    assert anonymous.status_code == 401, anonymous.text

    owner_browser, owner_csrf = _signed_in(app, world.ids[scenario.owner].email)
    no_csrf = owner_browser.request(method, path, data=form, follow_redirects=False)
    assert no_csrf.status_code == 403, "a form without the session's CSRF token must be refused"
    for outsider in scenario.outsiders:
        browser, csrf = _signed_in(app, world.ids[outsider].email)
        response = browser.request(
            method, path, data={**(form or {}), "csrf_token": csrf}, follow_redirects=False
        )
        assert response.status_code == 403, f"{outsider}: {response.status_code}"
    changes = _audit_count(db)
    sign_ins = changes - before  # each sign-in is audited; nothing else may have changed
    assert sign_ins == 1 + len(scenario.outsiders)

    allowed = owner_browser.request(
        method, path, data={**(form or {}), "csrf_token": owner_csrf}, follow_redirects=False
    )
    assert allowed.status_code in {200, 201, 303}, allowed.text
    assert _audit_count(db) > changes, "an allowed change left no audit entry"
