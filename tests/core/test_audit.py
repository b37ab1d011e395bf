"""The audit log: every mutation leaves a chained entry; tampering is found by `audit verify`."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from typing import Any

import sqlalchemy as sa

from lamplighter.core import audit, identity
from lamplighter.core.models import AuditEntry
from tests.conftest import SYSTEM, TEST_SECRET, auth, make_team, make_token, make_user


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "LAMPLIGHTER_DATABASE_URL": database_url,
        "LAMPLIGHTER_SECRET_KEY": TEST_SECRET,
    }
    return subprocess.run(
        [sys.executable, "-c", "from lamplighter.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_api_mutation_records_actor_request_and_diff(client: Any, db: Any) -> None:
    member = make_user(db)
    team = make_team(db, lead=member)
    token = make_token(db, member)
    response = client.patch(
        f"/api/v1/teams/{team.slug}",
        json={"description": "new words"},
        headers=auth(token) | {"x-request-id": "req-42"},
    )
    assert response.status_code == 200
    with db.sessionmaker() as session:
        entry = session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == "team.update")
        ).one()
    assert entry.actor_type == "token"
    assert entry.actor_label.startswith(member.email)
    assert entry.request_id == "req-42"
    assert entry.client_addr == "testclient"
    assert entry.diff == {"before": {"description": ""}, "after": {"description": "new words"}}


def test_secrets_never_reach_the_audit_log(client: Any, db: Any) -> None:
    admin = make_user(db, role="admin")
    token = make_token(db, admin)
    client.post(
        "/api/v1/users",
        json={"email": "pw@example.com", "display_name": "P", "password": "correct-horse-battery"},
        headers=auth(token),
    )
    created = client.post("/api/v1/tokens", json={"name": "n"}, headers=auth(token)).json()
    with db.sessionmaker() as session:
        dump = " ".join(str(e.diff) for e in session.scalars(sa.select(AuditEntry)))
    assert "correct-horse-battery" not in dump
    assert created["token"] not in dump


def test_verify_passes_on_an_untouched_chain(db: Any) -> None:
    make_team(db, members=[make_user(db)])
    with db.sessionmaker() as session:
        result = audit.verify(session=session)
    assert result.ok and result.checked >= 4


def test_edited_row_is_found(db: Any, database_url: str) -> None:
    make_team(db, members=[make_user(db), make_user(db)])
    with db.transaction() as session:
        target = session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id).offset(2)).first()
        assert target is not None
        target_id = target.id
        session.execute(
            sa.update(AuditEntry)
            .where(AuditEntry.id == target_id)
            .values(actor_label="someone-else")
        )
    with db.sessionmaker() as session:
        result = audit.verify(session=session)
    assert not result.ok
    assert result.broken_id == target_id
    assert "edited" in (result.reason or "")
    cli = _cli(database_url, "audit", "verify", "--output", "json")
    assert cli.returncode == 1
    assert f'"broken_id": {target_id}' in cli.stdout


def test_deleted_row_is_found(db: Any, database_url: str) -> None:
    make_team(db, members=[make_user(db), make_user(db)])
    with db.transaction() as session:
        ids = list(session.scalars(sa.select(AuditEntry.id).order_by(AuditEntry.id)))
        session.execute(sa.delete(AuditEntry).where(AuditEntry.id == ids[1]))
    with db.sessionmaker() as session:
        result = audit.verify(session=session)
    assert not result.ok
    assert result.broken_id == ids[2]
    assert "removed" in (result.reason or "")
    assert _cli(database_url, "audit", "verify").returncode == 1


def test_cli_verify_succeeds_on_clean_chain(db: Any, database_url: str) -> None:
    make_user(db)
    result = _cli(database_url, "audit", "verify", "--output", "json")
    assert result.returncode == 0, result.stderr
    assert '"ok": true' in result.stdout


def test_concurrent_writers_keep_one_chain(db: Any) -> None:
    lead = make_user(db)
    errors: list[BaseException] = []

    def create(index: int) -> None:
        try:
            for round_ in range(5):
                with db.transaction() as session:
                    identity.create_team(
                        session=session,
                        actor=SYSTEM,
                        slug=f"c-{index}-{round_}",
                        name="C",
                        lead_email=lead.email,
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    with db.sessionmaker() as session:
        result = audit.verify(session=session)
        hashes = list(session.scalars(sa.select(AuditEntry.prev_hash)))
    assert result.ok, result
    assert len(hashes) == len(set(hashes)), (
        "two entries claim the same predecessor: the chain forked"
    )


def test_audit_api_filters_and_paginates(client: Any, db: Any) -> None:
    admin = make_user(db, role="admin")
    token = make_token(db, admin)
    for index in range(5):
        assert (
            client.post(
                "/api/v1/users",
                json={"email": f"a{index}@example.com", "display_name": "A"},
                headers=auth(token),
            ).status_code
            == 201
        )
    headers = auth(token)
    page1 = client.get(
        "/api/v1/audit",
        params={
            "action": "user.create",
            "actor_id": f"token:{_token_id(client, token)}",
            "limit": 2,
        },
        headers=headers,
    ).json()
    assert len(page1["items"]) == 2 and page1["next_cursor"]
    page2 = client.get(
        "/api/v1/audit",
        params={
            "action": "user.create",
            "actor_id": f"token:{_token_id(client, token)}",
            "limit": 2,
            "cursor": page1["next_cursor"],
        },
        headers=headers,
    ).json()
    page3 = client.get(
        "/api/v1/audit",
        params={
            "action": "user.create",
            "actor_id": f"token:{_token_id(client, token)}",
            "limit": 2,
            "cursor": page2["next_cursor"],
        },
        headers=headers,
    ).json()
    ids = [e["id"] for e in page1["items"] + page2["items"] + page3["items"]]
    assert len(ids) == 5 and ids == sorted(ids, reverse=True)
    assert page3["next_cursor"] is None
    one = client.get(
        "/api/v1/audit", params={"object_type": "user", "object_id": str(admin.id)}, headers=headers
    ).json()
    assert [e["action"] for e in one["items"]] == ["user.create"]
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    assert (
        client.get("/api/v1/audit", params={"since": future}, headers=headers).json()["items"] == []
    )
    verify = client.get("/api/v1/audit/verify", headers=headers).json()
    assert verify["ok"] is True


def _token_id(client: Any, token: str) -> int:
    return int(client.get("/api/v1/tokens", headers=auth(token)).json()["items"][0]["id"])


def test_bulk_entries_join_the_chain(db: Any) -> None:
    make_user(db)
    changes = [audit.Change("bulk.import", "thing", str(n), after={"n": n}) for n in range(250)]
    with db.transaction() as session:
        assert audit.record_many(session=session, actor=SYSTEM, changes=changes) == 250
    make_user(db)  # a single entry after the bulk ones
    with db.sessionmaker() as session:
        result = audit.verify(session=session)
        ids = list(
            session.scalars(
                sa.select(AuditEntry.object_id)
                .where(AuditEntry.action == "bulk.import")
                .order_by(AuditEntry.id)
            )
        )
    assert result.ok, result
    assert ids == [str(n) for n in range(250)]
