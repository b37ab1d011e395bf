"""The core web pages, driven like a browser without JavaScript (plus a few HTMX requests)."""

from __future__ import annotations

import datetime as dt
import html
import re
from urllib.parse import unquote

import sqlalchemy as sa

from lamplighter.core import jobs
from lamplighter.core.db import Database
from lamplighter.core.models import Job
from tests.conftest import auth, make_team, make_token
from tests.helpers import HTMX, PASSWORD, found, login, person, sign_in, text


# -- signing in and out --------------------------------------------------------------------
def test_anonymous_pages_redirect_to_sign_in_and_come_back(client, db):
    for path in ["/", "/teams", "/profile", "/audit?action=team.create", "/catalog"]:
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=")
    user = person(db)
    target = client.get("/audit?action=team.create", follow_redirects=False).headers["location"]
    next_ = unquote(target.split("next=", 1)[1])
    assert next_ == "/audit?action=team.create"
    assert login(client, user.email, next_=next_).headers["location"] == next_


def test_wrong_password_is_refused_with_a_message_and_no_session(client, db):
    user = person(db, email="ada@example.com")
    response = login(client, user.email, password="not the password")
    assert response.status_code == 401
    assert "Email or password is wrong." in text(response)
    assert 'value="ada@example.com"' in response.text  # what they typed is kept
    assert "ll_session" not in response.headers.get("set-cookie", "")
    assert client.get("/", follow_redirects=False).status_code == 303


def test_sign_in_sets_a_session_cookie_and_home_greets_the_user(client, db):
    user = person(db, email="grace@example.com")
    make_team(db, slug="payments", lead=user)
    response = login(client, user.email)
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert "ll_session=" in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    assert "Max-Age=43200" in cookie  # the configured 12 session hours
    home = client.get("/")
    assert home.status_code == 200
    assert "Grace" in text(home)
    assert "Sign out" in text(home)
    assert 'href="/teams/payments"' in home.text  # your teams


def test_sign_in_form_needs_its_csrf_cookie(client, db):
    user = person(db)
    data = {"email": user.email, "password": PASSWORD, "csrf_token": "forged", "next": "/"}
    response = client.post("/login", data=data, follow_redirects=False)
    assert response.status_code == 403
    assert "expired" in text(response)
    assert client.get("/", follow_redirects=False).status_code == 303


def test_sign_in_never_redirects_off_site(client, db):
    user = person(db)
    response = login(client, user.email, next_="//evil.example/steal")
    assert response.headers["location"] == "/"


def test_sign_out_ends_the_session_for_good(client, db):
    user = person(db)
    csrf = sign_in(client, user)
    old_cookie = client.cookies["ll_session"]
    refused = client.post("/logout", data={}, follow_redirects=False)
    assert refused.status_code == 403  # no CSRF token: still signed in
    assert client.get("/", follow_redirects=False).status_code == 200
    response = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert "You are signed out." in text(client.get("/login"))
    client.cookies.set("ll_session", old_cookie)
    assert client.get("/", follow_redirects=False).headers["location"].startswith("/login")


# -- teams ---------------------------------------------------------------------------------
def test_team_page_shows_the_accountable_lead_and_the_members(client, db):
    lead = person(db, email="lin@example.com")
    member = person(db, email="max@example.com")
    make_team(db, slug="checkout", lead=lead, members=[member])
    sign_in(client, member)
    page = client.get("/teams/checkout")
    assert page.status_code == 200
    lead_card = found(r'<div class="lead-card">(.*?)</div>\s*</div>', page.text, re.S).group(1)
    assert "Accountable person" in lead_card and "Lin" in lead_card
    assert "lin@example.com" in page.text and "max@example.com" in page.text
    assert "Lead · accountable" in text(page)
    assert "Add a member" in text(page)  # a member may change the team


def test_member_adds_a_colleague_through_the_form(client, db):
    lead, member, newcomer = person(db), person(db), person(db, email="new@example.com")
    make_team(db, slug="search", lead=lead, members=[member])
    csrf = sign_in(client, member)
    response = client.post(
        "/teams/search/members",
        data={"email": "new@example.com", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert response.status_code == 303
    page = client.get(response.headers["location"])
    assert f"{newcomer.display_name} is now a member." in text(page)
    assert "new@example.com" in page.text
    assert f"{newcomer.display_name} is now a member." not in text(
        client.get("/teams/search")
    )  # flash shown once


def test_outsiders_and_viewers_cannot_add_members(client, db):
    lead, outsider, newcomer = person(db), person(db), person(db, email="nope@example.com")
    viewer = person(db, role="viewer")
    make_team(db, slug="ledger", lead=lead, members=[viewer])
    for who in (outsider, viewer):
        csrf = sign_in(client, who)
        page = client.get("/teams/ledger")
        assert "Add a member" not in text(page) and "Remove" not in text(page)
        response = client.post(
            "/teams/ledger/members", data={"email": newcomer.email, "csrf_token": csrf}
        )
        assert response.status_code == 403
        assert "only members of the owning team" in text(response)
    sign_in(client, lead)
    assert "nope@example.com" not in client.get("/teams/ledger").text


def test_form_post_without_csrf_is_refused_and_changes_nothing(client, db):
    lead, newcomer = person(db), person(db, email="sneaky@example.com")
    make_team(db, slug="vault", lead=lead)
    sign_in(client, lead)
    for headers, data in [
        ({}, {"email": newcomer.email}),
        ({"X-CSRF-Token": "wrong"}, {"email": newcomer.email}),
    ]:
        response = client.post("/teams/vault/members", data=data, headers=headers)
        assert response.status_code == 403
        assert "CSRF check failed" in text(response)
    assert "sneaky@example.com" not in client.get("/teams/vault").text


def test_anonymous_form_post_gets_401_page(client, db):
    make_team(db, slug="open")
    response = client.post("/teams/open/members", data={"email": "x@example.com"})
    assert response.status_code == 401
    assert "Sign in" in text(response)


def test_add_member_errors_show_next_to_the_field_and_keep_the_input(client, db):
    lead, member = person(db), person(db, email="dup@example.com")
    make_team(db, slug="infra", lead=lead, members=[member])
    csrf = sign_in(client, lead)
    unknown = client.post(
        "/teams/infra/members", data={"email": "ghost@example.com", "csrf_token": csrf}
    )
    assert unknown.status_code == 422
    assert 'id="f-email-error"' in unknown.text and "no user with email ghost@example.com" in text(
        unknown
    )
    assert 'value="ghost@example.com"' in unknown.text
    duplicate = client.post(
        "/teams/infra/members", data={"email": "dup@example.com", "csrf_token": csrf}
    )
    assert duplicate.status_code == 409
    assert "already a member" in text(duplicate)


def test_htmx_add_member_swaps_the_members_section(client, db):
    lead, newcomer = person(db), person(db, email="hx@example.com")
    make_team(db, slug="edge", lead=lead)
    csrf = sign_in(client, lead)
    response = client.post(
        "/teams/edge/members",
        data={"email": newcomer.email},
        headers={**HTMX, "X-CSRF-Token": csrf},
    )
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<section class="card" id="members"')
    assert "hx@example.com" in response.text and "is now a member" in response.text


def test_posting_to_a_missing_team_shows_not_found(client, db):
    user = person(db, role="sre")
    csrf = sign_in(client, user)
    response = client.post(
        "/teams/ghost-team/members", data={"email": user.email, "csrf_token": csrf}
    )
    assert response.status_code == 404
    assert "no team with slug 'ghost-team'" in text(response)
    assert user.display_name in text(response)  # still signed in, still the chrome


def test_remove_member_and_the_lead_cannot_be_removed(client, db):
    lead, member = person(db), person(db, email="leaving@example.com")
    make_team(db, slug="mobile", lead=lead, members=[member])
    csrf = sign_in(client, lead)
    response = client.post(
        f"/teams/mobile/members/{member.id}/remove",
        data={"csrf_token": csrf},
        follow_redirects=False,
    )
    assert response.status_code == 303
    page = client.get("/teams/mobile")
    assert "was removed from the team" in text(page) and "leaving@example.com" not in page.text
    refused = client.post(f"/teams/mobile/members/{lead.id}/remove", data={"csrf_token": csrf})
    assert refused.status_code == 409
    assert "the team lead cannot be removed" in text(refused)


def test_sre_creates_a_team_and_mistakes_are_explained(client, db):
    sre, lead = person(db, role="sre"), person(db, email="boss@example.com")
    csrf = sign_in(client, sre)
    assert "New team" in text(client.get("/teams"))
    bad = client.post(
        "/teams",
        data={"slug": "Bad Slug!", "name": "Data", "lead_email": lead.email, "csrf_token": csrf},
    )
    assert bad.status_code == 422
    assert 'id="f-slug-error"' in bad.text and "lowercase letters" in text(bad)
    assert 'value="Bad Slug!"' in bad.text and 'value="Data"' in bad.text
    created = client.post(
        "/teams",
        data={"slug": "data", "name": "Data", "lead_email": lead.email, "csrf_token": csrf},
        follow_redirects=False,
    )
    assert created.status_code == 303 and created.headers["location"] == "/teams/data"
    page = client.get("/teams/data")
    assert "Team Data created" in text(page) and "boss@example.com" in page.text
    again = client.post(
        "/teams",
        data={"slug": "data", "name": "Data", "lead_email": lead.email, "csrf_token": csrf},
    )
    assert again.status_code == 409 and "exists already" in text(again)


def test_members_cannot_create_teams(client, db):
    member, lead = person(db), person(db)
    csrf = sign_in(client, member)
    assert "New team" not in text(client.get("/teams"))
    assert client.get("/teams/new").status_code == 403
    response = client.post(
        "/teams",
        data={"slug": "rogue", "name": "Rogue", "lead_email": lead.email, "csrf_token": csrf},
    )
    assert response.status_code == 403
    assert client.get("/teams/rogue").status_code == 404


def test_team_list_pages_through_with_a_cursor(client, db):
    user = person(db)
    for slug in ("alpha", "bravo", "charlie"):
        make_team(db, slug=slug, lead=user)
    sign_in(client, user)
    first = client.get("/teams?limit=2")
    assert "/teams/alpha" in first.text and "/teams/charlie" not in first.text
    next_url = html.unescape(found(r'href="([^"]+)">Next page', first.text).group(1))
    second = client.get(next_url)
    assert "/teams/charlie" in second.text and "/teams/alpha" not in second.text
    assert "First page" in text(second)


# -- profile and tokens ----------------------------------------------------------------------
def test_new_token_is_shown_once_and_works(client, db):
    user = person(db, email="tok@example.com")
    csrf = sign_in(client, user)
    response = client.post(
        "/profile/tokens", data={"name": "laptop", "csrf_token": csrf}, follow_redirects=False
    )
    assert response.status_code == 303 and response.headers["location"] == "/profile"
    shown = client.get("/profile")
    token = found(r'id="new-token">(llt_[^<]+)<', shown.text).group(1)
    assert "You will not see it again" in text(shown)
    assert token not in client.get("/profile").text  # a reload does not show it again
    me = client.get("/api/v1/me", headers=auth(token))
    assert me.status_code == 200 and me.json()["email"] == "tok@example.com"
    assert "laptop" in text(client.get("/profile"))


def test_htmx_token_create_returns_the_section_with_the_secret(client, db):
    user = person(db)
    csrf = sign_in(client, user)
    response = client.post(
        "/profile/tokens", data={"name": "ci"}, headers={**HTMX, "X-CSRF-Token": csrf}
    )
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<section class="card" id="tokens"')
    token = found(r'id="new-token">(llt_[^<]+)<', response.text).group(1)
    assert token not in client.get("/profile").text
    assert client.get("/api/v1/me", headers=auth(token)).status_code == 200


def test_token_expiry_in_the_past_is_explained(client, db):
    user = person(db)
    csrf = sign_in(client, user)
    yesterday = (dt.date.today() - dt.timedelta(days=2)).isoformat()
    response = client.post(
        "/profile/tokens", data={"name": "old", "expires_on": yesterday, "csrf_token": csrf}
    )
    assert response.status_code == 422
    assert 'id="f-expires_on-error"' in response.text and "must be in the future" in text(response)
    assert 'value="old"' in response.text
    assert "You have no API tokens yet." in text(response)


def test_revoked_token_stops_working(client, db):
    user = person(db)
    plaintext = make_token(db, user, name="old-ci")
    csrf = sign_in(client, user)
    token_id = found(r'action="/profile/tokens/(\d+)/revoke"', client.get("/profile").text).group(1)
    response = client.post(
        f"/profile/tokens/{token_id}/revoke", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert response.status_code == 303
    page = client.get("/profile")
    assert "Token old-ci revoked" in text(page) and "Revoked" in text(page)
    assert f"/profile/tokens/{token_id}/revoke" not in page.text
    assert client.get("/api/v1/me", headers=auth(plaintext)).status_code == 401


def test_someone_elses_token_cannot_be_revoked(client, db):
    owner, other = person(db), person(db)
    plaintext = make_token(db, owner)
    csrf = sign_in(client, other)
    with db.transaction() as session:
        token_id = session.scalar(sa.text("SELECT id FROM api_tokens"))
    response = client.post(f"/profile/tokens/{token_id}/revoke", data={"csrf_token": csrf})
    assert response.status_code == 403
    assert client.get("/api/v1/me", headers=auth(plaintext)).status_code == 200


# -- audit and jobs ----------------------------------------------------------------------------
def test_audit_log_lists_changes_with_filters(client, db):
    lead, newcomer = person(db, email="auditor@example.com"), person(db, email="joined@example.com")
    make_team(db, slug="books", lead=lead)
    csrf = sign_in(client, lead)
    client.post("/teams/books/members", data={"email": newcomer.email, "csrf_token": csrf})
    page = client.get("/audit?actor=auditor@example.com&action=team.add_member")
    assert page.status_code == 200
    body = found(r"<tbody>(.*?)</tbody>", page.text, re.S).group(1)
    rows = re.findall(r"<tr>.*?</tr>", body, re.S)
    assert len(rows) == 1
    assert "team.add_member" in rows[0] and "joined@example.com" in rows[0] and "books" in rows[0]
    assert "No audit entries match" in text(client.get("/audit?action=nothing.like.this"))


def make_dead_job(db: Database) -> int:
    with db.transaction() as session:
        jobs.enqueue(session=session, kind="core.noop", payload={})
        session.execute(
            sa.update(Job).values(
                status="dead", attempts=8, last_error="RuntimeError: smtp refused"
            )
        )
        job_id = session.scalar(sa.select(Job.id))
        assert job_id is not None
        return int(job_id)


def test_jobs_page_is_for_sres_and_admins(client, db):
    make_dead_job(db)
    member = person(db)
    sign_in(client, member)
    response = client.get("/jobs")
    assert response.status_code == 403
    assert "Not allowed" in text(response)
    assert 'href="/jobs"' not in client.get("/").text


def test_sre_retries_a_dead_job(client, db):
    job_id = make_dead_job(db)
    sre = person(db, role="sre")
    csrf = sign_in(client, sre)
    page = client.get("/jobs")
    assert f"#{job_id}" in text(page) and "RuntimeError: smtp refused" in text(page)
    response = client.post(
        f"/jobs/{job_id}/retry", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert response.status_code == 303
    after = client.get("/jobs")
    assert "is queued again" in text(after) and "No dead jobs" in text(after)
    assert f"#{job_id}" in text(client.get("/jobs?status=queued"))
    assert "job.retry" in text(client.get("/audit?object_type=job"))


# -- errors and placeholders -------------------------------------------------------------------
def test_errors_are_pages_or_htmx_fragments(client, db):
    user = person(db)
    sign_in(client, user)
    page = client.get("/teams/no-such-team")
    assert page.status_code == 404 and "text/html" in page.headers["content-type"]
    assert "no team with slug 'no-such-team'" in text(page) and "<h1>Not found</h1>" in page.text
    fragment = client.get("/teams/no-such-team", headers=HTMX)
    assert fragment.status_code == 404 and "<html" not in fragment.text
    assert fragment.headers["hx-retarget"] == "#htmx-alerts"


def test_problem_type_pages_describe_the_problem(client):
    page = client.get("/problems/csrf-failed")
    assert page.status_code == 200 and "CSRF check failed" in text(page)
    assert client.get("/problems/made-up").status_code == 404


def test_the_navigation_lists_only_what_exists(client, db):
    sign_in(client, person(db))
    home = client.get("/")
    nav = found(r'<nav id="site-nav".*?</nav>', home.text, re.S).group(0)
    linked = re.findall(r'<a href="([^"]+)"', nav)
    assert linked == [
        "/",
        "/catalog",
        "/tickets",
        "/selfservice",
        "/slos",
        "/alerts",
        "/teams",
        "/audit",
        "/profile",
    ]
    assert "soon" not in text(nav).lower()
    for gone in ["/releases", "/oncall", "/incidents", "/automation"]:
        assert f'href="{gone}"' not in home.text
        assert client.get(gone).status_code == 404, "no placeholder page is left behind"


def test_every_page_has_one_title_landmarks_and_a_skip_link(client, db):
    user = person(db, role="admin")
    make_team(db, slug="core", lead=user)
    sign_in(client, user)
    for path in [
        "/",
        "/teams",
        "/teams/new",
        "/teams/core",
        "/profile",
        "/audit",
        "/jobs",
        "/people/new",
        "/teams/missing",
    ]:
        page = client.get(path).text
        assert page.count("<h1") == 1, path
        assert '<a class="skip-link" href="#main">' in page and '<main id="main"' in page, path
        assert '<nav id="site-nav" class="sidenav" aria-label="Main">' in page, path
        inputs = re.findall(r'<input id="([^"]+)"', page)
        assert all(f'<label for="{i}"' in page for i in inputs), path


def test_repeated_wrong_passwords_are_throttled(client, db):
    user = person(db)
    for _ in range(5):
        assert login(client, user.email, "wrong-password-1").status_code == 401
    blocked = login(client, user.email, PASSWORD)
    assert blocked.status_code == 429
    assert "too many failed sign-ins" in text(blocked)
    assert "ll_session" not in client.cookies
    other = person(db)
    assert login(client, other.email).status_code == 303, "other accounts are not affected"


def test_reserved_team_slug_is_refused(client, db):
    admin_token = make_token(db, person(db, role="admin"))
    lead = person(db)
    response = client.post(
        "/api/v1/teams",
        json={"slug": "new", "name": "New", "lead_email": lead.email},
        headers=auth(admin_token),
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.slug"


def test_retrying_a_job_that_is_not_dead_is_a_conflict(client, db):
    sre_token = make_token(db, person(db, role="sre"))
    job_id = make_dead_job(db)
    assert client.post(f"/api/v1/jobs/{job_id}/retry", headers=auth(sre_token)).status_code == 200
    again = client.post(f"/api/v1/jobs/{job_id}/retry", headers=auth(sre_token))
    assert again.status_code == 409
    assert "only dead jobs" in again.json()["detail"]
