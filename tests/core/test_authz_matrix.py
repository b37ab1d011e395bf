"""The authorization matrix, generated from the route table.

Every mutating route must answer 401 without credentials, 403 for a signed-in user outside the
owning team (and for a viewer), and succeed for an owner. A new mutating route without a scenario
here fails `test_every_mutating_route_has_a_scenario`, so new routes are covered automatically.
"""

from __future__ import annotations

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
            "url": "http://127.0.0.1:9/hook",
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


SCENARIOS: dict[tuple[str, str], Scenario] = {
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
    missing = sorted(routes - set(SCENARIOS))
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
