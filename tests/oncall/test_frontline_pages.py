"""The frontline pages: the alert groups a responder sees and acts on, the one-click links sent
in notifications, integrations with their key shown once, and silences."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lamplighter.alerting import groups as group_service
from lamplighter.alerting.models import AlertGroup, Integration, Silence
from lamplighter.core import clock, identity
from lamplighter.core.db import Database
from lamplighter.core.models import User
from lamplighter.core.settings import Settings
from lamplighter.oncall import links
from tests.alerting.fixtures_org import Org, am_body, pd_event
from tests.conftest import SYSTEM
from tests.helpers import PASSWORD, drain, found, sign_in, text

AM = "/api/v1/alerting/ingest/alertmanager/"
NOTE = "Scale the checkout pods first; page payments if the 5xx come from the gateway."


def can_sign_in(db: Database, *users: User) -> None:
    with db.transaction() as session:
        for user in users:
            identity.update_user(session=session, actor=SYSTEM, user_id=user.id, password=PASSWORD)


def group_of(db: Database, group_id: int) -> AlertGroup:
    with db.sessionmaker() as session:
        group = session.get(AlertGroup, group_id)
        assert group is not None
        session.expunge(group)
        return group


@dataclass
class Desk:
    """The checkout team's org with one Alertmanager group of two alerts, paged to the team
    (no escalation policy: the whole owning team hears, in the inbox), and the team's note."""

    org: Org
    group_id: int


@pytest.fixture
def desk(client: TestClient, db: Database, settings: Settings) -> Desk:
    org = Org(db)
    can_sign_in(db, org.lead, org.member, org.outsider, org.viewer)
    _, key = org.integration()
    answer = client.post(AM + key, json=am_body(fingerprints=("a1", "a2")))
    assert answer.status_code == 202, answer.text
    drain(db, settings)
    with db.sessionmaker() as session:
        group_id = session.scalars(sa.select(AlertGroup.id)).one()
    with db.transaction() as session:
        group_service.set_note(session=session, actor=SYSTEM, group_id=group_id, body=NOTE)
    return Desk(org, group_id)


def _history(page: str) -> list[str]:
    table = found(r'aria-label="Timeline and notifications, oldest first".*?</table>', page, re.S)
    return [text(row) for row in re.findall(r"<tr>(.*?)</tr>", table.group(0), re.S)[1:]]


# -- the group page -------------------------------------------------------------------------------
def test_the_group_page_shows_the_alerts_runbook_note_and_who_was_told_how(
    client: TestClient, desk: Desk
) -> None:
    sign_in(client, desk.org.member)
    page = client.get(f"/alerts/groups/{desk.group_id}")

    assert page.status_code == 200
    assert page.text.count("<h1") == 1
    assert "Checkout answers 7.2% of requests with 5xx" in found(r"<h1>.*?</h1>", page.text).group(
        0
    )
    alerts = found(r'aria-label="The group&#39;s alerts".*?</table>', page.text, re.S).group(0)
    assert len(re.findall(r"<tr>", alerts)) == 3  # a header and two alerts
    assert "a1:8080" in text(alerts) and "a2:8080" in text(alerts)
    assert 'href="https://runbooks.example.com/checkout/high-error-rate"' in page.text
    assert NOTE in text(page)
    assert 'href="/catalog/service/default/checkout"' in page.text
    history = _history(page.text)
    assert "Opened" in history[0] and "2 alert(s)" in history[0]
    told = [row for row in history if "Inbox: sent" in row]
    assert len(told) == 2
    assert any(desk.org.lead.display_name in row for row in told)
    assert any(desk.org.member.display_name in row for row in told)
    assert all("attempt 1, tier 1, round 1" in row for row in told)
    assert any("Notified" in row and desk.org.lead.display_name in row for row in history)


def test_without_a_runbook_of_its_own_the_entitys_runbook_is_linked(
    client: TestClient, db: Database, settings: Settings
) -> None:
    org = Org(db)
    can_sign_in(db, org.member)
    _, key = org.integration("pagerduty")
    assert client.post("/v2/enqueue", json=pd_event(key)).status_code == 202
    with db.sessionmaker() as session:
        group_id = session.scalars(sa.select(AlertGroup.id)).one()
    sign_in(client, org.member)

    page = client.get(f"/alerts/groups/{group_id}")

    runbook = found(r'<dd class="alert-runbook">(.*?)</dd>', page.text, re.S).group(1)
    assert 'href="https://runbooks.example.com/checkout"' in runbook
    assert "No note on Disk on db-1 is 95 % full yet." in text(page)


def test_acknowledge_changes_the_status_and_an_outsider_is_refused(
    client: TestClient, db: Database, desk: Desk
) -> None:
    csrf = sign_in(client, desk.org.outsider)
    page = client.get(f"/alerts/groups/{desk.group_id}")
    assert "/acknowledge" not in page.text, "the buttons are for those who may act"
    refused = client.post(f"/alerts/groups/{desk.group_id}/acknowledge", data={"csrf_token": csrf})
    assert refused.status_code == 403
    assert "only the owning team" in text(refused)
    assert group_of(db, desk.group_id).status == "triggered"

    csrf = sign_in(client, desk.org.member)
    page = client.get(f"/alerts/groups/{desk.group_id}")
    assert f'action="/alerts/groups/{desk.group_id}/acknowledge"' in page.text
    acked = client.post(
        f"/alerts/groups/{desk.group_id}/acknowledge",
        data={"csrf_token": csrf},
        follow_redirects=False,
    )
    assert acked.status_code == 303
    assert acked.headers["location"] == f"/alerts/groups/{desk.group_id}"
    after = client.get(acked.headers["location"])
    assert "Acknowledged: the escalation has stopped." in text(after)
    assert 'data-status="acknowledged"' in after.text
    assert f'action="/alerts/groups/{desk.group_id}/acknowledge"' not in after.text
    group = group_of(db, desk.group_id)
    assert group.status == "acknowledged" and group.acknowledged_by_user_id == desk.org.member.id
    assert any(
        "Acknowledged" in row and desk.org.member.display_name in row
        for row in _history(after.text)
    )


def test_a_button_posted_without_the_csrf_token_is_refused(
    client: TestClient, db: Database, desk: Desk
) -> None:
    sign_in(client, desk.org.member)

    refused = client.post(f"/alerts/groups/{desk.group_id}/resolve", data={})

    assert refused.status_code == 403
    assert "anti-forgery token" in text(refused)
    assert group_of(db, desk.group_id).status == "triggered"


def test_resolve_escalate_and_a_reassignment_to_nobody(
    client: TestClient, db: Database, desk: Desk
) -> None:
    csrf = sign_in(client, desk.org.lead)
    path = f"/alerts/groups/{desk.group_id}"
    wrong = client.post(f"{path}/reassign", data={"csrf_token": csrf, "user": "nobody@example.com"})
    assert wrong.status_code == 422
    field = found(r'<p class="field-error" id="f-user-error">(.*?)</p>', wrong.text, re.S)
    assert "no active user" in text(field.group(1))
    assert group_of(db, desk.group_id).assignee_user_id is None

    escalated = client.post(f"{path}/escalate", data={"csrf_token": csrf})
    assert "Escalated: the next tier is being notified now." in text(escalated)
    resolved = client.post(f"{path}/resolve", data={"csrf_token": csrf})
    assert "Resolved. The next alert of this kind opens a new group." in text(resolved)
    assert group_of(db, desk.group_id).status == "resolved"
    again = client.post(f"{path}/escalate", data={"csrf_token": csrf})
    assert again.status_code == 409
    assert "nobody left to escalate to" in text(again)


def test_the_team_writes_the_note_shown_the_next_time_it_fires(
    client: TestClient, db: Database, settings: Settings, desk: Desk
) -> None:
    csrf = sign_in(client, desk.org.member)
    saved = client.post(
        f"/alerts/groups/{desk.group_id}/note",
        data={"csrf_token": csrf, "note": "Restart the payment gateway."},
    )
    assert "Saved the note on CheckoutHighErrorRate" in text(saved)
    client.post(f"/alerts/groups/{desk.group_id}/resolve", data={"csrf_token": csrf})
    _, key = desk.org.integration(suffix="second")
    assert client.post(AM + key, json=am_body(fingerprints=("b1",))).status_code == 202
    with db.sessionmaker() as session:
        newest = session.scalars(sa.select(AlertGroup.id).order_by(AlertGroup.id.desc())).first()

    page = client.get(f"/alerts/groups/{newest}")

    assert newest != desk.group_id
    assert "Restart the payment gateway." in found(
        r'<dd class="alert-note">(.*?)</dd>', page.text, re.S
    ).group(1)


def test_silence_from_the_group_is_prefilled_with_its_alertname_and_entity(
    client: TestClient, db: Database, desk: Desk
) -> None:
    csrf = sign_in(client, desk.org.member)
    page = client.get(f"/alerts/groups/{desk.group_id}")
    prefilled = found(r'<textarea id="f-matchers"[^>]*>(.*?)</textarea>', page.text, re.S)
    lines = text(prefilled.group(1).replace("\n", " | "))
    assert lines == 'alertname="CheckoutHighErrorRate" | service="checkout"'

    silenced = client.post(
        f"/alerts/groups/{desk.group_id}/silence",
        data={
            "csrf_token": csrf,
            "matchers": 'alertname="CheckoutHighErrorRate"\nservice="checkout"',
            "ends_in": "2h",
            "reason": "Deploying the fix",
        },
    )

    assert "Silenced alerts matching" in text(silenced)
    with db.sessionmaker() as session:
        silence = session.scalars(sa.select(Silence)).one()
    assert silence.matchers == ['alertname="CheckoutHighErrorRate"', 'service="checkout"']
    assert silence.team_id == desk.org.team.id


def test_a_runbook_that_is_no_web_address_is_shown_but_never_linked(
    client: TestClient, db: Database
) -> None:
    org = Org(db)
    can_sign_in(db, org.member)
    _, key = org.integration("pagerduty")
    event = pd_event(key, custom_details={"runbook_url": "javascript:alert(document.cookie)"})
    assert client.post("/v2/enqueue", json=event).status_code == 202
    with db.sessionmaker() as session:
        group_id = session.scalars(sa.select(AlertGroup.id)).one()
    sign_in(client, org.member)

    page = client.get(f"/alerts/groups/{group_id}")

    runbook = found(r'<dd class="alert-runbook">(.*?)</dd>', page.text, re.S).group(1)
    assert "<a " not in runbook and "javascript:alert(document.cookie)" in text(runbook)
    assert 'href="javascript:' not in page.text


# -- the list -------------------------------------------------------------------------------------
def test_a_viewer_sees_the_open_groups_first_then_the_resolved(
    client: TestClient, db: Database, settings: Settings, desk: Desk
) -> None:
    _, key = desk.org.integration("pagerduty")
    assert client.post("/v2/enqueue", json=pd_event(key)).status_code == 202
    with db.transaction() as session:
        group_service.resolve(session=session, actor=SYSTEM, group_id=desk.group_id)
    sign_in(client, desk.org.viewer)

    page = client.get("/alerts")

    assert page.status_code == 200
    rows = re.findall(r"<tr>(.*?)</tr>", page.text, re.S)[1:]
    assert "Disk on db-1 is 95 % full" in text(rows[0]) and "Triggered" in text(rows[0])
    assert "Checkout answers" in text(rows[1]) and "Resolved" in text(rows[1])
    assert "Critical" in text(rows[0]) and "service:default/checkout" in text(rows[0])
    only = client.get("/alerts", params={"status": "resolved"})
    assert "Disk on db-1" not in text(only) and "Checkout answers" in text(only)
    wrong = client.get("/alerts", params={"status": "sleeping"})
    assert wrong.status_code == 422 and "choose one of open" in text(wrong)


def test_the_list_pages_through_the_open_groups_then_the_resolved(
    client: TestClient, db: Database, desk: Desk
) -> None:
    _, key = desk.org.integration(suffix="storm", group_by=["@dedup_key"])
    storm = am_body(fingerprints=tuple(f"s{n}" for n in range(54)))
    assert client.post(AM + key, json=storm).status_code == 202
    with db.transaction() as session:
        ids = list(session.scalars(sa.select(AlertGroup.id).order_by(AlertGroup.id)))
        for group_id in ids[:5]:  # the desk's group and four of the storm's
            group_service.resolve(session=session, actor=SYSTEM, group_id=group_id)
    sign_in(client, desk.org.member)

    first = client.get("/alerts")
    following = client.get(
        found(r'<a class="next" href="([^"]+)"', first.text).group(1).replace("&amp;", "&")
    )

    def shown(page: str) -> list[tuple[int, str]]:
        rows = re.findall(r'href="/alerts/groups/(\d+)".*?data-status="(\w+)"', page, re.S)
        return [(int(group_id), status) for group_id, status in rows]

    assert len(ids) == 55
    assert [status for _, status in shown(first.text)] == ["triggered"] * 50
    assert [status for _, status in shown(following.text)] == ["resolved"] * 5
    assert sorted(g for g, _ in shown(first.text) + shown(following.text)) == ids
    assert 'class="next"' not in following.text


# -- the one-click links --------------------------------------------------------------------------
def test_a_link_asks_on_get_and_acknowledges_as_its_person_on_post(
    client: TestClient,
    db: Database,
    settings: Settings,
    desk: Desk,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="lamplighter.http")
    token = links.sign(settings, group_id=desk.group_id, action="ack", user_id=desk.org.lead.id)
    client.cookies.clear()

    asked = client.get(f"/alerts/act/{token}")

    assert asked.status_code == 200
    heading = text(found(r"<h1>.*?</h1>", asked.text, re.S).group(0))
    assert (
        heading == "Acknowledge \u2018Checkout answers 7.2% of requests with 5xx\u2019 on checkout?"
    )
    assert asked.text.count(token) == 1 and f'action="/alerts/act/{token}"' in asked.text
    assert asked.headers["referrer-policy"] == "no-referrer"
    assert group_of(db, desk.group_id).status == "triggered", "opening the link changes nothing"

    done = client.post(f"/alerts/act/{token}")

    assert done.status_code == 200
    assert f"Acknowledged as {desk.org.lead.display_name}" in text(done)
    assert token not in done.text
    group = group_of(db, desk.group_id)
    assert group.status == "acknowledged" and group.acknowledged_by_user_id == desk.org.lead.id
    logged = [r for r in caplog.records if r.name == "lamplighter.http"]
    assert logged and all(token not in str(r.__dict__) for r in logged)
    assert any(getattr(r, "path", "") == "/alerts/act/{token}" for r in logged)


def test_an_expired_or_altered_link_is_explained_and_changes_nothing(
    client: TestClient, db: Database, settings: Settings, desk: Desk
) -> None:
    with clock.frozen() as held:
        token = links.sign(
            settings, group_id=desk.group_id, action="resolve", user_id=desk.org.member.id
        )
        held.advance(hours=settings.alert_link_ttl_hours, seconds=1)

        expired = client.post(f"/alerts/act/{token}")

    assert expired.status_code == 410
    assert "This link has expired" in text(expired)
    assert "open the alert group in Lamplighter instead" in text(expired)
    assert f'href="/alerts/groups/{desk.group_id}"' in expired.text
    assert token not in expired.text
    group_id, action, _user_id, rest = token.split(".", 3)
    altered = ".".join([group_id, action, str(desk.org.outsider.id), rest])

    for response in (client.get(f"/alerts/act/{altered}"), client.post(f"/alerts/act/{altered}")):
        assert response.status_code == 404
        assert "This link is not valid" in text(response)
        assert "it was changed, or it is not Lamplighter's" in text(response)
    assert group_of(db, desk.group_id).status == "triggered"


# -- integrations ---------------------------------------------------------------------------------
def test_a_new_integration_shows_its_key_and_url_once(
    client: TestClient, db: Database, desk: Desk
) -> None:
    csrf = sign_in(client, desk.org.member)
    created = client.post(
        "/alerts/integrations",
        data={
            "csrf_token": csrf,
            "name": "prometheus-prod",
            "kind": "alertmanager",
            "entity": "checkout",
        },
    )

    assert "Created the integration prometheus-prod. Copy its key now." in text(created)
    key = found(r'<code class="secret" id="integration-key">([0-9a-f]{32})</code>', created.text)
    url = found(r'<code class="secret" id="integration-url">([^<]+)</code>', created.text)
    assert url.group(1).endswith(f"/api/v1/alerting/ingest/alertmanager/{key.group(1)}")
    again = client.get("/alerts/integrations")
    assert key.group(1) not in again.text
    assert f"…{key.group(1)[-4:]}" in text(again)
    assert "/api/v1/alerting/ingest/alertmanager/&lt;key&gt;" in again.text
    with db.sessionmaker() as session:
        made = session.scalars(sa.select(Integration).where(Integration.name == "prometheus-prod"))
        integration = made.one()
    rotated = client.post(
        f"/alerts/integrations/{integration.id}/rotate-key", data={"csrf_token": csrf}
    )
    new_key = found(r'id="integration-key">([0-9a-f]{32})<', rotated.text).group(1)
    assert new_key != key.group(1)
    assert client.post(AM + key.group(1), json=am_body()).status_code in (401, 404)


def test_a_wrong_integration_is_explained_next_to_its_field(client: TestClient, desk: Desk) -> None:
    csrf = sign_in(client, desk.org.member)

    refused = client.post(
        "/alerts/integrations",
        data={"csrf_token": csrf, "name": "x", "kind": "alertmanager", "entity": "no-such-service"},
    )

    assert refused.status_code == 422
    error = found(r'id="f-entity-error">(.*?)</p>', refused.text, re.S)
    assert "no-such-service" in text(error.group(1))
    assert 'value="no-such-service"' in refused.text
    generic = {"csrf_token": csrf, "name": "hook", "kind": "generic", "entity": "checkout"}
    no_summary = client.post(
        "/alerts/integrations", data={**generic, "mapping": '{"dedup_key": "${{ body.id }}"}'}
    )
    assert no_summary.status_code == 422
    error = found(r'id="f-mapping-error">(.*?)</p>', no_summary.text, re.S)
    assert "summary: required: the text the alert is paged with" in text(error.group(1))
    not_json = client.post("/alerts/integrations", data={**generic, "mapping": "{summary"})
    error = found(r'id="f-mapping-error">(.*?)</p>', not_json.text, re.S)
    assert "not valid JSON" in text(error.group(1))


# -- silences -------------------------------------------------------------------------------------
def test_the_silence_form_creates_a_silence_and_explains_a_bad_matcher(
    client: TestClient, db: Database, desk: Desk
) -> None:
    csrf = sign_in(client, desk.org.member)
    form = {
        "csrf_token": csrf,
        "team": desk.org.team.slug,
        "matchers": "alertname=DiskFull\ninstance=~(",
        "ends_in": "2h",
        "reason": "Replacing the disk",
    }

    refused = client.post("/alerts/silences", data=form)

    assert refused.status_code == 422
    error = found(r'id="f-matchers-error">(.*?)</p>', refused.text, re.S)
    assert text(error.group(1)).startswith("Error: line 2: the regular expression cannot be used")
    assert "alertname=DiskFull\ninstance=~(" in refused.text  # what was typed is kept
    with db.sessionmaker() as session:
        assert session.scalars(sa.select(Silence)).first() is None

    created = client.post("/alerts/silences", data={**form, "matchers": "alertname=DiskFull"})

    assert "Silenced alerts matching alertname=DiskFull until" in text(created)
    rows = re.findall(r"<tr>(.*?)</tr>", created.text, re.S)[1:]
    assert "alertname=DiskFull" in text(rows[0]) and "In force" in text(rows[0])
    assert "Replacing the disk" in text(rows[0])
    with db.sessionmaker() as session:
        silence = session.scalars(sa.select(Silence)).one()
    ended = client.post(f"/alerts/silences/{silence.id}/expire", data={"csrf_token": csrf})
    assert "Ended the silence now." in text(ended)
    assert "Expired early" in text(re.findall(r"<tr>(.*?)</tr>", ended.text, re.S)[1])


def test_a_maintenance_window_needs_an_entity_in_the_catalog(
    client: TestClient, db: Database, desk: Desk
) -> None:
    csrf = sign_in(client, desk.org.member)
    form = {"csrf_token": csrf, "window_ends_in": "1h", "window_reason": "Upgrading the database"}

    refused = client.post("/alerts/maintenance", data={**form, "entity": "nowhere"})
    created = client.post("/alerts/maintenance", data={**form, "entity": "checkout"})

    assert refused.status_code == 422
    assert "nowhere" in text(found(r'id="f-entity-error">(.*?)</p>', refused.text, re.S).group(1))
    assert "checkout is under maintenance until" in text(created)
    assert "Maintenance" in text(re.findall(r"<tr>(.*?)</tr>", created.text, re.S)[1])


def test_every_alerting_page_has_one_title_and_labelled_inputs(
    client: TestClient, desk: Desk
) -> None:
    sign_in(client, desk.org.lead)
    for path in (
        "/alerts",
        f"/alerts/groups/{desk.group_id}",
        "/alerts/integrations",
        "/alerts/silences",
        "/alerts/report",
    ):
        page = client.get(path)
        assert page.status_code == 200, path
        assert page.text.count("<h1") == 1, path
        assert '<main id="main"' in page.text, path
        inputs = re.findall(r'<(?:input|textarea|select) id="([^"]+)"', page.text)
        assert inputs and all(f'<label for="{i}"' in page.text for i in inputs), path
        assert len(inputs) == len(set(inputs)), f"{path}: two fields share an id"
