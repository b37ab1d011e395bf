"""The schedule routes end to end: define, read, change and delete a schedule; its final
schedule; overrides; importing a calendar (JSON, an upload, a URL); who is on call now. Every
refusal is an RFC 9457 problem naming the field, and changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lamplighter.core import outbound
from lamplighter.core.db import Database
from lamplighter.core.models import AuditEntry
from lamplighter.oncall import calendars, on_duty
from lamplighter.oncall.models import OnCallOverride, OnCallSchedule
from tests.conftest import auth, make_token
from tests.oncall import schedule_fixtures
from tests.oncall.schedule_fixtures import BERLIN, Org, local, rotation, utc
from tests.oncall.test_schedules_service import CALENDAR

org = schedule_fixtures.org
BASE = "/api/v1/oncall"


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def fields(body: dict[str, Any]) -> dict[str, str]:
    return {error["field"]: error["reason"] for error in body.get("errors", [])}


def counts(db: Database) -> tuple[int, int, int]:
    """Schedules, overrides and audit entries: what a refused request must leave alone."""
    with db.sessionmaker() as session:
        return (
            session.scalar(sa.select(sa.func.count()).select_from(OnCallSchedule)) or 0,
            session.scalar(sa.select(sa.func.count()).select_from(OnCallOverride)) or 0,
            session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) or 0,
        )


def schedule_body(org: Org, **more: Any) -> dict[str, Any]:
    return {
        "team": org.team.slug,
        "name": "primary",
        "time_zone": BERLIN,
        "layers": [
            rotation("day", org.people, start=local(BERLIN, 2027, 3, 1, 9)),
        ],
    } | more


def test_a_member_defines_changes_and_deletes_a_schedule_others_only_read(
    org: Org, db: Database, client: TestClient
) -> None:
    member, viewer, outsider = (make_token(db, u) for u in (org.bo, org.viewer, org.outsider))
    before = counts(db)
    assert problem(client.post(f"{BASE}/schedules", json=schedule_body(org)), 401)
    for token in (viewer, outsider):
        refused = problem(
            client.post(f"{BASE}/schedules", json=schedule_body(org), headers=auth(token)), 403
        )
        assert "only members of the owning team, SREs and admins" in refused["detail"]
    assert counts(db) == before

    created = client.post(f"{BASE}/schedules", json=schedule_body(org), headers=auth(member))
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert (schedule["team"], schedule["time_zone"], schedule["feed"]) == (
        "oncall-team",
        BERLIN,
        False,
    )
    version = schedule["layers"][0]["versions"][0]
    assert (
        version["anchor"] == "2027-03-01T09:00:00+01:00" and version["participants"] == org.people
    )
    path = f"{BASE}/schedules/{schedule['id']}"

    assert client.get(path, headers=auth(viewer)).json()["name"] == "primary"
    second = client.post(
        f"{BASE}/schedules", json=schedule_body(org, name="secondary"), headers=auth(member)
    )
    assert second.status_code == 201
    page = client.get(f"{BASE}/schedules", params={"limit": 1}, headers=auth(viewer)).json()
    rest = client.get(
        f"{BASE}/schedules",
        params={"limit": 1, "cursor": page["next_cursor"]},
        headers=auth(viewer),
    ).json()
    assert [s["name"] for s in page["items"] + rest["items"]] == ["primary", "secondary"]
    assert rest["next_cursor"] is None
    team_only = client.get(f"{BASE}/schedules", params={"team": "elsewhere"}, headers=auth(viewer))
    assert team_only.json()["items"] == []

    for token in (viewer, outsider):
        problem(client.patch(path, json={"name": "mine"}, headers=auth(token)), 403)
        problem(client.delete(path, headers=auth(token)), 403)
    changed = client.patch(
        path, json={"description": "Payments' first line", "time_zone": "UTC"}, headers=auth(member)
    )
    assert changed.status_code == 200 and changed.json()["description"] == "Payments' first line"
    assert problem(client.patch(path, json={"name": "secondary"}, headers=auth(member)), 409)
    assert client.delete(path, headers=auth(member)).status_code == 204
    problem(client.get(path, headers=auth(member)), 404)


def test_bad_input_is_a_problem_naming_the_field_and_changes_nothing(
    org: Org, db: Database, client: TestClient
) -> None:
    member = auth(make_token(db, org.bo))
    before = counts(db)
    naive = schedule_body(org)
    naive["layers"][0]["versions"][0]["effective_from"] = "2027-03-01T09:00:00"
    body = problem(client.post(f"{BASE}/schedules", json=naive, headers=member), 422)
    assert "timezone" in fields(body)["body.layers.0.versions.0.effective_from"]
    zone = problem(
        client.post(
            f"{BASE}/schedules", json=schedule_body(org, time_zone="Mars/Olympus"), headers=member
        ),
        422,
    )
    assert "'Mars/Olympus' is not an IANA time zone" in fields(zone)["body.time_zone"]
    stranger = schedule_body(org)
    stranger["layers"][0]["versions"][0]["participants"] = [org.ada.id, 424242]
    unknown = problem(client.post(f"{BASE}/schedules", json=stranger, headers=member), 422)
    assert fields(unknown) == {"body.layers.0.versions.0.participants": "no user with id 424242"}
    extra = problem(
        client.post(f"{BASE}/schedules", json=schedule_body(org, colour="red"), headers=member), 422
    )
    assert "body.colour" in fields(extra)
    team = problem(
        client.post(f"{BASE}/schedules", json=schedule_body(org, team="ghosts"), headers=member),
        422,
    )
    assert fields(team) == {"body.team": "no team with slug 'ghosts'"}
    assert counts(db) == before


def test_the_final_schedule_of_a_range_with_its_layers_and_overrides(
    org: Org, db: Database, client: TestClient
) -> None:
    schedule = org.schedule(
        [rotation("day", org.people, start=local(BERLIN, 2027, 3, 1, 9))], time_zone=BERLIN
    )
    org.override(schedule.id, org.cy, utc(2027, 3, 27, 20), utc(2027, 3, 27, 22))
    viewer = auth(make_token(db, org.viewer))
    path = f"{BASE}/schedules/{schedule.id}/final"
    answer = client.get(
        path,
        params={"start": "2027-03-27T00:00:00Z", "end": "2027-03-29T00:00:00Z"},
        headers=viewer,
    )
    assert answer.status_code == 200, answer.text
    document = answer.json()
    final = [(s["start"], s["end"], s["display_name"], s["layer"]) for s in document["final"]]
    # 26 March is Bo's, 27 March Cy's (23 hours, to the spring-forward 09:00), 28 March Ada's.
    assert final == [
        ("2027-03-27T00:00:00Z", "2027-03-27T08:00:00Z", "Bo", "day"),
        ("2027-03-27T08:00:00Z", "2027-03-27T20:00:00Z", "Cy", "day"),
        ("2027-03-27T20:00:00Z", "2027-03-27T22:00:00Z", "Cy", "override"),
        ("2027-03-27T22:00:00Z", "2027-03-28T07:00:00Z", "Cy", "day"),
        ("2027-03-28T07:00:00Z", "2027-03-29T00:00:00Z", "Ada", "day"),
    ]
    assert [s["display_name"] for s in document["layers"][0]["shifts"]] == ["Bo", "Cy", "Ada"]
    assert document["overrides"][0]["user_id"] == org.cy.id
    backwards = problem(
        client.get(
            path,
            params={"start": "2027-03-29T00:00:00Z", "end": "2027-03-27T00:00:00Z"},
            headers=viewer,
        ),
        422,
    )
    assert fields(backwards) == {"query.end": "the range ends after it starts"}
    too_long = problem(
        client.get(
            path,
            params={"start": "2027-01-01T00:00:00Z", "end": "2027-06-01T00:00:00Z"},
            headers=viewer,
        ),
        422,
    )
    assert fields(too_long) == {"query.end": "a range spans at most 93 days"}
    naive = problem(client.get(path, params={"start": "2027-03-27T00:00:00"}, headers=viewer), 422)
    assert "query.start" in fields(naive)


def test_overrides_are_made_listed_and_removed_by_the_team(
    org: Org, db: Database, client: TestClient
) -> None:
    schedule = org.schedule([rotation("day", [org.ada.id], start=utc(2027, 6, 1))])
    path = f"{BASE}/schedules/{schedule.id}/overrides"
    member, outsider = auth(make_token(db, org.bo)), auth(make_token(db, org.outsider))
    cover = {
        "user_id": org.bo.id,
        "starts_at": "2027-06-02T18:00:00+02:00",
        "ends_at": "2027-06-03T08:00:00+02:00",
    }
    before = counts(db)
    problem(client.post(path, json=cover, headers=outsider), 403)
    backwards = problem(
        client.post(path, json=cover | {"ends_at": "2027-06-01T08:00:00+02:00"}, headers=member),
        422,
    )
    assert "an override ends after it starts" in fields(backwards)["body.ends_at"]
    naive = problem(
        client.post(path, json=cover | {"starts_at": "2027-06-02T18:00:00"}, headers=member), 422
    )
    assert "body.starts_at" in fields(naive)
    nobody = problem(client.post(path, json=cover | {"user_id": 777777}, headers=member), 422)
    assert fields(nobody) == {"body.user_id": "no user with id 777777"}
    assert counts(db) == before

    made = client.post(path, json=cover, headers=member)
    assert made.status_code == 201, made.text
    assert made.json()["user"]["email"] == "bo@example.com"
    assert made.json()["starts_at"] == "2027-06-02T16:00:00Z"
    with db.sessionmaker() as session:
        assert on_duty.on_call_user_ids(session, schedule.id, utc(2027, 6, 2, 20)) == [org.bo.id]
    listed = client.get(path, params={"limit": 10}, headers=outsider).json()
    assert [o["id"] for o in listed["items"]] == [made.json()["id"]]
    later = client.get(path, params={"ends_after": "2027-07-01T00:00:00Z"}, headers=outsider)
    assert later.json()["items"] == []
    one = f"{path}/{made.json()['id']}"
    problem(client.delete(one, headers=outsider), 403)
    assert client.delete(one, headers=member).status_code == 204
    problem(client.delete(one, headers=member), 404)


def test_a_calendar_is_imported_as_json_as_an_upload_or_from_a_url(
    org: Org, db: Database, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule = org.schedule([rotation("day", [org.ada.id], start=utc(2027, 1, 1))])
    path = f"{BASE}/schedules/{schedule.id}/import-ics"
    member, viewer = auth(make_token(db, org.bo)), auth(make_token(db, org.viewer))
    monkeypatch.setattr("lamplighter.oncall.calendars.utcnow", lambda: utc(2027, 5, 20))

    problem(client.post(path, json={"layer": "vendor", "content": CALENDAR}, headers=viewer), 403)
    imported = client.post(path, json={"layer": "vendor", "content": CALENDAR}, headers=member)
    assert imported.status_code == 200, imported.text
    report = imported.json()
    assert (report["layer"], report["source"], report["imported_shifts"]) == ("vendor", "upload", 2)
    assert {"event": "broken@vendor", "reason": "its DTEND is before its DTSTART"} in report[
        "problems"
    ]

    upload = client.post(
        path,
        params={"layer": "vendor-upload"},
        content=CALENDAR.encode(),
        headers=member | {"Content-Type": "text/calendar; charset=utf-8"},
    )
    assert upload.status_code == 200, upload.text
    assert upload.json()["layer"] == "vendor-upload" and upload.json()["imported_shifts"] == 2

    served: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        served.append(str(request.url))
        return httpx.Response(200, text=CALENDAR)

    monkeypatch.setattr(calendars, "TRANSPORT", httpx.MockTransport(answer))
    monkeypatch.setattr(outbound, "RESOLVER", lambda host, port: ["93.184.216.34"])
    url = "https://calendar.example.com/rota.ics"
    fetched = client.post(path, json={"layer": "from-url", "url": url}, headers=member)
    assert fetched.status_code == 200, fetched.text
    assert fetched.json()["source"] == url and served == [url]
    layers = client.get(f"{BASE}/schedules/{schedule.id}", headers=viewer).json()["layers"]
    assert [(layer["name"], layer["kind"]) for layer in layers] == [
        ("day", "rotation"),
        ("vendor", "imported"),
        ("vendor-upload", "imported"),
        ("from-url", "imported"),
    ]

    # The layers as read are the layers to send back: unchanged, nothing is written.
    before = counts(db)
    same = client.patch(f"{BASE}/schedules/{schedule.id}", json={"layers": layers}, headers=member)
    assert same.status_code == 200, same.text
    assert same.json()["layers"] == layers and counts(db) == before
    with db.sessionmaker() as session:
        assert on_duty.on_call_user_ids(session, schedule.id, utc(2027, 6, 2)) == [org.bo.id]

    internal = problem(
        client.post(path, json={"layer": "x", "url": "http://10.0.0.5/rota.ics"}, headers=member),
        422,
    )
    assert "refused by the outbound policy" in fields(internal)["body.url"]
    garbage = problem(client.post(path, json={"content": "hello"}, headers=member), 422)
    assert "the file is not iCalendar" in fields(garbage)["body.content"]
    both = problem(client.post(path, json={"content": CALENDAR, "url": url}, headers=member), 422)
    assert "one of them" in both["detail"]
    bad_layer = problem(
        client.post(
            path,
            params={"layer": "override"},
            content=CALENDAR.encode(),
            headers=member | {"Content-Type": "text/calendar"},
        ),
        422,
    )
    assert "query.layer" in fields(bad_layer)
    assert counts(db) == before and len(served) == 1


def test_who_is_on_call_now_for_a_schedule_a_team_or_an_entity(
    org: Org, db: Database, client: TestClient
) -> None:
    schedule = org.schedule([rotation("day", org.people, start=utc(2027, 6, 1, 9))])
    viewer = auth(make_token(db, org.viewer))
    at = {"at": "2027-06-02T12:00:00Z"}
    expected = [
        {
            "user_id": org.bo.id,
            "display_name": "Bo",
            "email": "bo@example.com",
            "schedule_id": schedule.id,
            "schedule_name": "primary",
            "layer": "day",
            "since": "2027-06-02T09:00:00Z",
            "until": "2027-06-03T09:00:00Z",
        }
    ]
    for where in (
        {"schedule": schedule.id},
        {"team": org.team.slug},
        {"entity": "service:default/checkout"},
        {"entity": "checkout"},
        {"entity": str(org.entity.id)},
    ):
        answer = client.get(f"{BASE}/now", params=where | at, headers=viewer)
        assert answer.status_code == 200, (where, answer.text)
        assert answer.json() == {"items": expected, "next_cursor": None}
    problem(client.get(f"{BASE}/now", params=at), 401)
    none = problem(client.get(f"{BASE}/now", params=at, headers=viewer), 422)
    assert "query.schedule" in fields(none)
    naive = problem(
        client.get(
            f"{BASE}/now",
            params={"schedule": schedule.id, "at": "2027-06-02T12:00:00"},
            headers=viewer,
        ),
        422,
    )
    assert "query.at" in fields(naive)
    ghost = problem(
        client.get(f"{BASE}/now", params={"entity": "service:default/ghost"}, headers=viewer), 404
    )
    assert "ghost" in ghost["detail"]
