"""What a newcomer meets on the golden paths: runs checked before they are queued, every problem
named at once in words, dry runs that say so, approvals that reach the approver (and say why
them), runs that can be edited and run again, and an access run that waits for the decision."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr

from lamplighter.catalog import service as catalog
from lamplighter.core.context import Actor
from lamplighter.core.db import Database
from lamplighter.core.errors import ValidationFailed
from lamplighter.core.models import InboxItem, Team, User
from lamplighter.core.settings import Settings
from lamplighter.selfservice import golden, grants, runs
from lamplighter.selfservice.models import Run
from tests.conftest import SYSTEM, make_team, make_user
from tests.helpers import PASSWORD, drain, person, sign_in, text
from tests.selfservice.test_golden import actor_for, load


@pytest.fixture
def org(db: Database, settings: Settings) -> dict[str, User | Team]:
    lin = make_user(db, email="lin@example.com", password=PASSWORD)
    ada = make_user(db, email="ada@example.com", password=PASSWORD)
    boss = make_user(db, email="boss@example.com")
    engineering = make_team(db, slug="engineering", lead=boss)
    make_team(db, slug="platform", lead=lin)
    payments = make_team(db, slug="payments", lead=lin, members=[ada], parent=engineering.slug)
    with db.transaction() as session:
        golden.load_golden(session=session, actor=SYSTEM, settings=settings)
        catalog.create(
            session=session,
            actor=SYSTEM,
            data=catalog.EntityInput(kind="service", name="taken", owner="payments"),
        )
    return {"lin": lin, "ada": ada, "boss": boss, "payments": payments}


def inbox(db: Database, user: User) -> list[InboxItem]:
    with db.transaction() as session:
        return list(
            session.scalars(
                sa.select(InboxItem).where(InboxItem.user_id == user.id).order_by(InboxItem.id)
            )
        )


def runs_in(db: Database) -> int:
    with db.transaction() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(Run)) or 0)


def test_a_run_is_checked_against_the_catalog_before_it_is_queued(
    db: Database, org: dict[str, User | Team]
) -> None:
    ada = actor_for(db, org["ada"])  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed) as caught, db.transaction() as session:
        runs.start(
            session=session,
            actor=ada,
            template_name="python-web-service",
            parameters={"name": "taken", "database": False},
        )
    fields = {e.field: e.reason for e in caught.value.errors}
    # The catalog name the run would register is taken: said on the parameter it comes from.
    assert "service:default/taken exists already" in fields["parameters.name"]
    assert runs_in(db) == 0


def test_an_admin_in_no_team_is_asked_to_choose_the_team(
    db: Database, org: dict[str, User | Team]
) -> None:
    admin = make_user(db, email="root@example.com", role="admin")
    with pytest.raises(ValidationFailed) as caught, db.transaction() as session:
        runs.start(
            session=session,
            actor=actor_for(db, admin),
            template_name="python-web-service",
            parameters={"name": "orders-api", "database": False},
        )
    fields = {e.field: e.reason for e in caught.value.errors}
    assert "choose the team" in fields["parameters.team"]
    assert "valid string" not in fields["parameters.team"]  # not pydantic's words
    assert runs_in(db) == 0


def test_every_problem_of_a_run_is_named_at_once_in_words(
    client: TestClient, db: Database, org: dict[str, User | Team]
) -> None:
    csrf = sign_in(client, org["ada"])  # type: ignore[arg-type]
    response = client.post(
        "/selfservice/templates/python-web-service",
        data={
            "csrf_token": csrf,
            "param.name": "Refund_API",
            "param.python_version": "2.7",
            "param.team": "Not A Team",
        },
    )
    assert response.status_code == 422
    page = text(response)
    assert "'Refund_API' is not allowed: use 2 to 40 lowercase letters" in page
    assert "choose one of the listed values" in page  # the python version, in the same answer
    assert "a team's slug is lowercase letters" in page
    assert "^[a-z]" not in page.split("Please correct")[1].split("Service name")[0]
    assert runs_in(db) == 0


def test_a_dry_run_says_so_in_the_inbox_the_api_and_its_page(
    client: TestClient, db: Database, settings: Settings, org: dict[str, User | Team]
) -> None:
    ada = org["ada"]
    assert isinstance(ada, User)
    with db.transaction() as session:
        run_id = runs.start(
            session=session,
            actor=actor_for(db, ada),
            template_name="python-web-service",
            parameters={"name": "orders-api", "database": False},
            dry_run=True,
        ).id
    drain(db, settings)
    titles = [item.title for item in inbox(db, ada)]
    assert titles == [f"Dry run {run_id} of Python web service passed: nothing was created"]
    sign_in(client, ada)
    page = client.get(f"/selfservice/runs/{run_id}")
    assert "Dry run" in text(page) and "What a real run would make" in text(page)
    assert 'href="/catalog/service/default/orders-api"' not in page.text  # no link to nothing
    assert "Run it for real" in text(page)
    form = client.get(f"/selfservice/templates/python-web-service?from_run={run_id}")
    assert 'value="orders-api"' in form.text


def test_the_runs_team_lead_is_asked_and_told_why(
    client: TestClient, db: Database, settings: Settings, org: dict[str, User | Team]
) -> None:
    ada, lin, boss = org["ada"], org["lin"], org["boss"]
    assert isinstance(ada, User) and isinstance(lin, User) and isinstance(boss, User)
    configured = settings.model_copy(
        update={"selfservice_postgres_admin_url": SecretStr("postgresql://admin@db.invalid/x")}
    )
    with db.transaction() as session:
        catalog.create(
            session=session,
            actor=SYSTEM,
            data=catalog.EntityInput(kind="service", name="ledger", owner="payments"),
        )
        run = runs.start(
            session=session,
            actor=actor_for(db, ada),
            template_name="postgres-database",
            parameters={"service": "ledger", "database": "ledger_reports"},
            settings=configured,
        )
        run_id = run.id
        asked = runs.approvers(session=session, run=run)
    assert asked.user_ids == [lin.id]
    assert "leads Payments, the team this run is for" in asked.why
    [item] = [i for i in inbox(db, lin) if i.title.startswith("Approve a run")]
    assert item.link == f"/selfservice/runs/{run_id}#decision"
    # The approver finds it on the home page and on "My runs", and the run page names them.
    sign_in(client, lin)
    home = text(client.get("/"))
    assert "Waiting for your approval" in home and f"Run {run_id}" in home
    assert f"Run {run_id}" in text(client.get("/selfservice/runs"))
    sign_in(client, ada)
    run_page = text(client.get(f"/selfservice/runs/{run_id}"))
    assert "Who may approve: Lin" in run_page and "the team this run is for" in run_page

    # A lead asking for their own team's run goes to the lead above them.
    with db.transaction() as session:
        own = runs.start(
            session=session,
            actor=actor_for(db, lin),
            template_name="postgres-database",
            parameters={"service": "ledger", "database": "ledger_audit"},
            settings=configured,
            requesting_team="payments",
        )
        above = runs.approvers(session=session, run=own)
    assert above.user_ids == [boss.id] and "above Payments" in above.why


def test_an_access_request_withdrawn_before_the_decision_ends_its_run(
    db: Database, settings: Settings, org: dict[str, User | Team]
) -> None:
    ada = org["ada"]
    assert isinstance(ada, User)
    owner = person(db)
    make_team(db, slug="data", lead=owner)
    with db.transaction() as session:
        catalog.create(
            session=session,
            actor=SYSTEM,
            data=catalog.EntityInput(kind="resource", name="orders-db", owner="data"),
        )
        run_id = runs.start(
            session=session,
            actor=actor_for(db, ada),
            template_name="access",
            parameters={"entity": "orders-db", "reason": "reports"},
        ).id
    drain(db, settings)
    run, steps = load(db, run_id)
    assert run.status == "awaiting_decision"
    assert steps[0].output is not None
    grant_id = steps[0].output["grant_id"]
    requester: Actor = actor_for(db, ada)
    with db.transaction() as session:
        grants.revoke(session=session, actor=requester, grant_id=grant_id, reason="not needed")
    run, steps = load(db, run_id)
    assert (run.status, steps[0].status) == ("rejected", "failed")
    assert run.ticket_id is None  # nothing was done, nothing is counted as toil
    assert "not needed" in (steps[0].error or "")


def test_asking_again_for_access_already_asked_for_is_refused_before_the_run(
    db: Database, settings: Settings, org: dict[str, User | Team]
) -> None:
    ada = org["ada"]
    assert isinstance(ada, User)
    make_team(db, slug="data", lead=person(db))
    with db.transaction() as session:
        catalog.create(
            session=session,
            actor=SYSTEM,
            data=catalog.EntityInput(kind="resource", name="orders-db", owner="data"),
        )
    parameters = {"entity": "orders-db", "reason": "reports"}
    with db.transaction() as session:
        runs.start(
            session=session, actor=actor_for(db, ada), template_name="access", parameters=parameters
        )
    drain(db, settings)
    with pytest.raises(ValidationFailed) as caught, db.transaction() as session:
        runs.start(
            session=session, actor=actor_for(db, ada), template_name="access", parameters=parameters
        )
    reason = {e.field: e.reason for e in caught.value.errors}["parameters.entity"]
    assert "already has or asked for read access to resource:default/orders-db" in reason
    assert runs_in(db) == 1
