from tests.conftest import auth, make_team, make_token, make_user


def test_team_read(client, db):
    lead = make_user(db)
    team = make_team(db, lead=lead)
    token = make_token(db, lead)
    r = client.get(f"/api/v1/teams/{team.slug}", headers=auth(token))
    assert r.status_code == 200, r.text
    assert r.json()["lead"]["email"] == lead.email
