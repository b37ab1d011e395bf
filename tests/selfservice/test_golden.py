"""The golden paths shipped with Lamplighter, run end to end by the real job worker.

Golden path 1 runs on the embedded default (SQLite, local git) with its database step against
the real PostgreSQL server named by LAMPLIGHTER_TEST_PG_ADMIN_URL (skipped without it, failed
under LAMPLIGHTER_TEST_REQUIRE_ALL=1)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
import yaml
from psycopg import sql
from pydantic import SecretStr

from lamplighter.catalog import service as catalog
from lamplighter.catalog.refs import Ref
from lamplighter.core import identity
from lamplighter.core.context import Actor
from lamplighter.core.crypto import SecretBox
from lamplighter.core.db import Database
from lamplighter.core.errors import ValidationFailed
from lamplighter.core.models import AuditEntry, InboxItem, Team, User
from lamplighter.core.settings import Settings
from lamplighter.selfservice import golden, grants, lifecycle, runs, templates
from lamplighter.selfservice.actions.git import local_git_root
from lamplighter.selfservice.actions.simple import RUN_ANNOTATION
from lamplighter.selfservice.models import Run, RunStep, Template
from lamplighter.tickets.models import RequestType, Ticket
from tests.conftest import SYSTEM, make_team, make_user, require
from tests.helpers import drain

ADMIN_URL = os.environ.get("LAMPLIGHTER_TEST_PG_ADMIN_URL")
SHIPPED = ["access", "postgres-database", "python-web-service"]
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


# -- helpers -----------------------------------------------------------------------------------
def actor_for(db: Database, user: User) -> Actor:
    with db.transaction() as session:
        team_ids = identity.team_ids_of(session=session, user_id=user.id)
    return Actor(kind="user", label=user.email, user_id=user.id, role=user.role, team_ids=team_ids)


def start(
    db: Database,
    actor: Actor,
    template: str,
    parameters: dict[str, Any],
    settings: Settings | None = None,
) -> int:
    with db.transaction() as session:
        return runs.start(
            session=session,
            actor=actor,
            template_name=template,
            parameters=parameters,
            settings=settings,
        ).id


def start_approved(
    db: Database,
    actor: Actor,
    template: str,
    parameters: dict[str, Any],
    settings: Settings | None = None,
) -> int:
    """Start a run and approve it (python-web-service waits for a lead: it makes a database)."""
    run_id = start(db, actor, template, parameters, settings)
    with db.transaction() as session:
        runs.approve(session=session, actor=SYSTEM, run_id=run_id)
    return run_id


def load(db: Database, run_id: int) -> tuple[Run, list[RunStep]]:
    with db.transaction() as session:
        return runs.get(session=session, run_id=run_id), runs.steps_of(
            session=session, run_id=run_id
        )


def git_clone(url: str, target: Path) -> Path:
    subprocess.run(["git", "clone", "-q", url, str(target)], check=True, capture_output=True)
    return target


def pg_exists(catalog_table: str, column: str, value: str) -> bool:
    assert ADMIN_URL
    query = sql.SQL("SELECT 1 FROM {} WHERE {} = %s").format(
        sql.Identifier(catalog_table), sql.Identifier(column)
    )
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        return conn.execute(query, (value,)).fetchone() is not None


def audit_actions(db: Database, run_id: int) -> list[str]:
    with db.transaction() as session:
        return list(
            session.scalars(
                sa.select(AuditEntry.action)
                .where(
                    AuditEntry.object_type == lifecycle.OBJECT_TYPE,
                    AuditEntry.object_id == str(run_id),
                )
                .order_by(AuditEntry.id)
            )
        )


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture
def platform(db: Database) -> Team:
    return make_team(db, slug="platform", lead=make_user(db, email="lead@example.com"))


@pytest.fixture
def team(db: Database) -> Team:
    return make_team(db, slug="payments", lead=make_user(db, email="payments-lead@example.com"))


@pytest.fixture
def requester(db: Database, team: Team) -> Actor:
    user = make_user(db, email="dev@example.com")
    with db.transaction() as session:
        identity.add_member(session=session, actor=SYSTEM, slug=team.slug, email=user.email)
    return actor_for(db, user)


@pytest.fixture
def shipped(db: Database, platform: Team, settings: Settings) -> templates.SyncResult:
    with db.transaction() as session:
        return golden.load_golden(session=session, actor=SYSTEM, settings=settings)


@pytest.fixture
def pg_settings(settings: Settings) -> Settings:
    require(bool(ADMIN_URL), "a PostgreSQL admin role (LAMPLIGHTER_TEST_PG_ADMIN_URL)")
    return settings.model_copy(
        update={"selfservice_postgres_admin_url": SecretStr(ADMIN_URL or "")}
    )


@pytest.fixture
def service_name() -> Iterator[str]:
    """A fresh service name; its database and role are dropped whatever the test leaves."""
    name = f"golden-{uuid.uuid4().hex[:8]}"
    yield name
    if not ADMIN_URL:
        return
    database = name.replace("-", "_")
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(f"{database}_owner")))


# -- (a) the shipped templates -----------------------------------------------------------------
def test_every_golden_template_parses_and_validates(db: Database, platform: Team) -> None:
    files = sorted(golden.GOLDEN_DIR.glob("*.yaml"))
    assert [f.stem for f in files] == ["access", "postgres-database", "python-web-service"]
    with db.transaction() as session:
        for file in files:
            spec = templates.validate(
                session=session, definition=templates.parse_yaml(file.read_text())
            )
            assert spec["request_type"] in {"new-repository", "database", "access-grant"}
            for name, schema in spec["parameters"]["properties"].items():
                assert schema.get("title") and schema.get("description"), name


def test_loading_the_golden_paths_is_idempotent_and_reads_the_templates_dir(
    db: Database, platform: Team, settings: Settings, tmp_path: Path
) -> None:
    with db.transaction() as session:
        first = golden.load_golden(session=session, actor=SYSTEM, settings=settings)
    assert (sorted(first.created), first.errors) == (SHIPPED, [])

    own = tmp_path / "templates"
    own.mkdir()
    spec = yaml.safe_load((golden.GOLDEN_DIR / "access.yaml").read_text())
    (own / "mine.yaml").write_text(yaml.safe_dump(spec | {"name": "my-access", "title": "Mine"}))
    configured = settings.model_copy(update={"templates_dir": own})
    with db.transaction() as session:
        second = golden.load_golden(session=session, actor=SYSTEM, settings=configured)
    assert (second.created, sorted(second.unchanged), second.updated) == (
        ["my-access"],
        SHIPPED,
        [],
    )
    with db.transaction() as session:
        rows = {t.name: t for t in templates.list_(session=session)}
        assert {name: rows[name].version for name in SHIPPED} == dict.fromkeys(SHIPPED, 1)
        assert rows["python-web-service"].owner_team_id == platform.id
        assert rows["python-web-service"].source_path == str(
            golden.GOLDEN_DIR / "python-web-service.yaml"
        )


def test_the_golden_paths_go_to_a_named_owner_when_asked(
    db: Database, platform: Team, settings: Settings
) -> None:
    sre_team = make_team(db, slug="sre")
    with db.transaction() as session:
        result = golden.load_golden(session=session, actor=SYSTEM, owner="sre", settings=settings)
        assert (sorted(result.created), result.errors) == (SHIPPED, [])
        template = templates.get(session=session, name="access")
        assert template.owner_team_id == sre_team.id
        assert template.source_path == str(golden.GOLDEN_DIR / "access.yaml")
        again = golden.load_golden(session=session, actor=SYSTEM, owner="sre", settings=settings)
        assert sorted(again.unchanged) == SHIPPED


# -- (b) golden path 1, end to end --------------------------------------------------------------
@sqlite_only
def test_golden_path_1_ends_with_a_repository_a_database_catalog_entries_and_a_journal(
    db: Database,
    shipped: templates.SyncResult,
    pg_settings: Settings,
    team: Team,
    requester: Actor,
    service_name: str,
    tmp_path: Path,
) -> None:
    settings = pg_settings
    started = time.perf_counter()
    run_id = start_approved(
        db,
        requester,
        "python-web-service",
        {"name": service_name, "description": "Takes payments", "python_version": "3.11"},
        settings,
    )
    drain(db, settings)
    run, steps = load(db, run_id)
    assert run.status == "succeeded", run.error
    assert [(s.step_id, s.status) for s in steps] == [
        ("repo", "succeeded"),
        ("ci", "succeeded"),
        ("database", "succeeded"),
        ("register_database", "succeeded"),
        ("register", "succeeded"),
    ]
    assert time.perf_counter() - started < 30  # the benchmark holds the real target (5 s)

    # A cloneable repository whose files are rendered for this service and team.
    assert steps[0].output is not None
    clone_url = steps[0].output["clone_url"]
    work = git_clone(clone_url, tmp_path / "clone")
    readme = (work / "README.md").read_text()
    assert readme.startswith(f"# {service_name}\n") and "Takes payments" in readme
    info = yaml.safe_load((work / "catalog-info.yaml").read_text())
    assert info["metadata"]["name"] == service_name
    assert info["spec"]["owner"] == "group:payments"
    package = service_name.replace("-", "_")
    assert "/healthz" in (work / "src" / package / "app.py").read_text()
    ci = yaml.safe_load((work / ".github" / "workflows" / "ci.yml").read_text())
    assert "3.11" in str(ci["jobs"])

    # A database the requester connects to with the secret shown once.
    with db.transaction() as session:
        secrets = runs.reveal_secrets(
            session=session,
            actor=requester,
            run_id=run_id,
            box=SecretBox(settings.effective_secret_key()),
        )
    database = service_name.replace("-", "_")
    with psycopg.connect(secrets["connection_string"], connect_timeout=10) as conn:
        conn.execute("CREATE TABLE payments (id serial PRIMARY KEY, amount_cents integer)")
        conn.execute("INSERT INTO payments (amount_cents) VALUES (1250)")
        row = conn.execute("SELECT current_user, current_database(), count(*) FROM payments")
        assert row.fetchone() == (f"{database}_owner", database, 1)

    # Catalog entries owned by the requesting team, the service depending on its database.
    with db.transaction() as session:
        service = catalog.find(session, Ref("service", "default", service_name))
        resource = catalog.find(session, Ref("resource", "default", f"{service_name}-db"))
        assert service is not None and resource is not None
        assert service.owner_team_id == team.id and resource.owner_team_id == team.id
        assert resource.type == "database"
        assert service.annotations[RUN_ANNOTATION] == f"run-{run_id}-register"
        relations = catalog.relations_of(session=session, entity_id=service.id)
        assert [e.name for e in relations["depends_on"]] == [f"{service_name}-db"]
        outputs = runs.rendered_outputs(session=session, run=run)
        ticket = session.get(Ticket, run.ticket_id)
        new_repository = session.scalar(
            sa.select(RequestType).where(RequestType.slug == "new-repository")
        )
        assert ticket is not None and new_repository is not None
        assert (ticket.type_id, ticket.status, ticket.resolution) == (
            new_repository.id,
            "done",
            "self-service",
        )
        assert ticket.effort_minutes == new_repository.expected_effort_minutes
        assert ticket.requesting_team_id == team.id
    assert outputs["links"][0] == {"title": "Repository (git clone URL)", "url": clone_url}
    assert outputs["entities"] == [
        f"service:default/{service_name}",
        f"resource:default/{service_name}-db",
    ]

    # An audit trail of the run.
    trail = audit_actions(db, run_id)
    assert trail[0] == "selfservice.run.start" and trail[-1] == "selfservice.run.secrets_revealed"
    assert "selfservice.run.succeeded" in trail


def test_a_dry_run_of_golden_path_1_renders_every_step_and_creates_nothing(
    db: Database, shipped: templates.SyncResult, settings: Settings, requester: Actor
) -> None:
    def dry_run(parameters: dict[str, Any]) -> tuple[Run, list[RunStep]]:
        with db.transaction() as session:
            run_id = runs.start(
                session=session,
                actor=requester,
                template_name="python-web-service",
                parameters=parameters,
                dry_run=True,
            ).id
        drain(db, settings)
        return load(db, run_id)

    # No PostgreSQL server is configured here: a dry run with the database says so at that
    # step, naming the setting, instead of passing and leaving the real run to fail.
    run, steps = dry_run({"name": "orders-api"})
    assert run.status == "failed" and run.failed_step == "database"
    assert "LAMPLIGHTER_SELFSERVICE_POSTGRES_ADMIN_URL" in (run.error or "")
    assert [s.status for s in steps][:3] == ["skipped", "skipped", "failed"]
    assert steps[0].input is not None and steps[0].input["owner"] == "payments"
    assert steps[1].input == {
        "clone_url": "<output of step repo>",
        "flavour": "github-actions",
        "python_version": "3.12",
    }
    assert steps[2].input == {"database": "orders_api"}

    # Without the database it passes: every step checked, the database steps left out.
    run, steps = dry_run({"name": "orders-api", "database": False})
    assert run.status == "succeeded", run.error
    assert [s.step_id for s in steps] == ["repo", "ci", "database", "register_database", "register"]
    assert [s.status for s in steps] == ["skipped"] * 5
    assert steps[2].input is None and steps[3].input is None  # their condition was false
    assert steps[4].input is not None
    assert steps[4].input["entities"][0]["depends_on"] == []
    assert run.outputs is not None and run.outputs["entities"] == ["service:default/orders-api", ""]
    assert not local_git_root(settings).exists()
    assert run.ticket_id is None


# -- (c) a failure in the last step leaves nothing behind ---------------------------------------
@sqlite_only
def test_a_failure_in_the_last_step_of_golden_path_1_leaves_nothing_and_a_retry_succeeds(
    db: Database,
    shipped: templates.SyncResult,
    pg_settings: Settings,
    platform: Team,
    team: Team,
    requester: Actor,
    service_name: str,
) -> None:
    settings = pg_settings
    database = service_name.replace("-", "_")
    run_id = start_approved(db, requester, "python-web-service", {"name": service_name}, settings)
    # Someone registers the database's catalog name after the run was checked and approved.
    taken = f"{service_name}-db"
    with db.transaction() as session:
        catalog.create(
            session=session,
            actor=SYSTEM,
            data=catalog.EntityInput(kind="resource", name=taken, owner=platform.slug),
        )
    drain(db, settings)
    run, steps = load(db, run_id)
    assert run.status == "failed"
    assert run.failed_step == "register_database"
    assert (run.error or "").startswith("step register_database (catalog.register) failed:")
    assert f"resource:default/{taken} exists already" in (run.error or "")
    assert [s.status for s in steps] == [
        "compensated",
        "compensated",
        "compensated",
        "failed",
        "pending",
    ]
    # Nothing left behind: no repository (not even a half-built one), no database, no role,
    # no catalog entity of the run, no journal entry.
    git_root = local_git_root(settings)
    assert not git_root.exists() or list(git_root.iterdir()) == []
    assert not pg_exists("pg_database", "datname", database)
    assert not pg_exists("pg_roles", "rolname", f"{database}_owner")
    with db.transaction() as session:
        assert catalog.find(session, Ref("service", "default", service_name)) is None
        kept = catalog.find(session, Ref("resource", "default", taken))
        assert kept is not None and kept.owner_team_id == platform.id  # not ours: untouched
        assert session.scalar(sa.select(sa.func.count()).select_from(Ticket)) == 0
    assert "selfservice.run.failed" in audit_actions(db, run_id)

    with db.transaction() as session:  # the cause is removed
        catalog.delete(session=session, actor=SYSTEM, ref=f"resource:{taken}")
        runs.retry(session=session, actor=requester, run_id=run_id)
    drain(db, settings)
    run, steps = load(db, run_id)
    assert run.status == "succeeded", run.error
    assert [s.status for s in steps] == ["succeeded"] * 5
    assert sorted(p.name for p in local_git_root(settings).iterdir()) == [f"{service_name}.git"]
    assert pg_exists("pg_database", "datname", database)
    with db.transaction() as session:
        resource = catalog.find(session, Ref("resource", "default", taken))
        assert resource is not None and resource.owner_team_id == team.id
        assert session.scalar(sa.select(sa.func.count()).select_from(Ticket)) == 1


# -- (d) golden paths 2 and 3 wait for approval as their policy says ----------------------------
def test_golden_path_2_waits_for_the_owning_team_leads_approval(
    db: Database,
    shipped: templates.SyncResult,
    settings: Settings,
    platform: Team,
    team: Team,
    requester: Actor,
) -> None:
    with db.transaction() as session:
        catalog.create(
            session=session,
            actor=SYSTEM,
            data=catalog.EntityInput(kind="service", name="ledger", owner=team.slug),
        )
    parameters = {"service": "ledger", "database": "ledger_reports"}
    # Where no PostgreSQL server is configured, the run is refused before anything is queued,
    # naming the setting that enables it.
    with pytest.raises(ValidationFailed) as refused:
        start(db, requester, "postgres-database", parameters, settings)
    assert "LAMPLIGHTER_SELFSERVICE_POSTGRES_ADMIN_URL" in refused.value.detail
    configured = settings.model_copy(
        update={"selfservice_postgres_admin_url": SecretStr("postgresql://admin@db.invalid/x")}
    )
    run_id = start(db, requester, "postgres-database", parameters, configured)
    drain(db, settings)  # nothing runs before the approval
    run, steps = load(db, run_id)
    assert run.status == "awaiting_approval"
    assert [s.status for s in steps] == ["pending", "pending"]
    with db.transaction() as session:
        asked = session.execute(
            sa.select(InboxItem.user_id, InboxItem.body).where(
                InboxItem.title == "Approve a run of PostgreSQL database for an existing service?"
            )
        ).all()
        # The lead of the team the run is for decides, told why it is them.
        assert [user_id for user_id, _ in asked] == [team.lead_user_id]
        assert "database='ledger_reports'" in asked[0][1]
        assert "leads Payments, the team this run is for" in asked[0][1]
        lead = session.get(User, team.lead_user_id)
        assert lead is not None
    with db.transaction() as session:
        runs.reject(
            session=session,
            actor=actor_for(db, lead),
            run_id=run_id,
            reason="ledger shares payments-db",
        )
    run, _ = load(db, run_id)
    assert (run.status, run.decision_reason) == ("rejected", "ledger shares payments-db")


@sqlite_only
def test_golden_path_2_approved_creates_the_database_and_its_catalog_resource(
    db: Database,
    shipped: templates.SyncResult,
    pg_settings: Settings,
    platform: Team,
    team: Team,
    requester: Actor,
    service_name: str,
) -> None:
    database = service_name.replace("-", "_")
    with db.transaction() as session:  # the existing service the database is for
        catalog.create(
            session=session,
            actor=SYSTEM,
            data=catalog.EntityInput(kind="service", name="ledger", owner=team.slug),
        )
    run_id = start(
        db, requester, "postgres-database", {"service": "ledger", "database": database}, pg_settings
    )
    with db.transaction() as session:
        lead = session.get(User, team.lead_user_id)
        assert lead is not None
    with db.transaction() as session:
        runs.approve(session=session, actor=actor_for(db, lead), run_id=run_id)
    drain(db, pg_settings)
    run, _ = load(db, run_id)
    assert run.status == "succeeded", run.error
    assert pg_exists("pg_database", "datname", database)
    with db.transaction() as session:
        resource = catalog.find(session, Ref("resource", "default", service_name))
        assert resource is not None and resource.owner_team_id == team.id
        ticket = session.get(Ticket, run.ticket_id)
        assert ticket is not None and ticket.effort_minutes == 90  # the "database" request type
        ledger = catalog.get_by_ref(session=session, ref="service:ledger")
        ledger_relations = catalog.relations_of(session=session, entity_id=ledger.id)
        assert [e.ref for e in ledger_relations["depends_on"]] == [resource.ref]


def test_golden_path_3_files_a_grant_that_waits_for_the_resources_accountable_person(
    db: Database,
    shipped: templates.SyncResult,
    settings: Settings,
    team: Team,
    requester: Actor,
) -> None:
    owner = make_user(db, email="owner@example.com")
    make_team(db, slug="billing", lead=owner)
    with db.transaction() as session:
        catalog.create(
            session=session,
            actor=SYSTEM,
            data=catalog.EntityInput(kind="resource", name="billing-db", owner="billing"),
        )
    run_id = start(
        db,
        requester,
        "access",
        {"entity": "resource:default/billing-db", "reason": "reconcile refunds"},
    )
    run, _ = load(db, run_id)
    assert run.status == "queued"  # the template asks no approval: the grant does
    drain(db, settings)
    # The run does not claim success while no access exists: it waits for the decision, and
    # nothing is journaled (no effort counted) yet.
    run, steps = load(db, run_id)
    assert run.status == "awaiting_decision", run.error
    assert steps[0].status == "waiting"
    assert steps[0].output is not None and steps[0].output["status"] == "pending"
    assert run.ticket_id is None
    grant_id = steps[0].output["grant_id"]
    with db.transaction() as session:
        asked = session.execute(
            sa.select(InboxItem.user_id, InboxItem.link).where(
                InboxItem.title.startswith("Decide on an access request")
            )
        ).all()
        assert [tuple(row) for row in asked] == [
            (owner.id, f"/selfservice/access#grant-{grant_id}")
        ]
        grant = grants.get(session=session, grant_id=grant_id)
        assert (grant.grantee_user_id, grant.access) == (requester.user_id, "read")
    with db.transaction() as session:
        grants.approve(session=session, actor=actor_for(db, owner), grant_id=grant_id)
    drain(db, settings)
    run, steps = load(db, run_id)
    assert run.status == "succeeded", run.error
    assert steps[0].status == "succeeded" and steps[0].output is not None
    assert steps[0].output["status"] == "active"
    with db.transaction() as session:
        assert grants.get(session=session, grant_id=grant_id).status == "active"
        ticket = session.get(Ticket, run.ticket_id)
        assert ticket is not None and ticket.effort_minutes == 20  # the "access-grant" type
        assert session.scalar(sa.select(sa.func.count()).select_from(Template)) == 3
