"""The signed acknowledge and resolve links: bound to one group, one action, one person, for a
while; anything changed in them, or another key, and they stop working."""

from __future__ import annotations

import datetime as dt

import pytest

from lamplighter.core.errors import NotFound, ValidationFailed
from lamplighter.core.settings import Settings
from lamplighter.oncall import links

NOW = dt.datetime(2027, 3, 1, 9, 30, tzinfo=dt.UTC)


def settings_with(**changes: object) -> Settings:
    values: dict[str, object] = {
        "secret_key": "links-test-secret-key-0123456789abcdef",
        "base_url": "https://lamplighter.example.com/",
        "alert_link_ttl_hours": 24,
    }
    values.update(changes)
    return Settings(**values)  # type: ignore[arg-type]


SETTINGS = settings_with()


def test_a_link_says_which_group_action_and_person_until_it_expires() -> None:
    token = links.sign(SETTINGS, group_id=12, action="ack", user_id=7, now=NOW)

    claim = links.verify(SETTINGS, token, now=NOW + dt.timedelta(hours=23, minutes=59))

    assert claim == links.LinkClaim(
        group_id=12, action="ack", user_id=7, expires_at=NOW + dt.timedelta(hours=24)
    )
    assert links.url(SETTINGS, token) == f"https://lamplighter.example.com/alerts/act/{token}"
    assert all(c.isalnum() or c in "-_." for c in token), "the token must be URL-safe as it is"


def test_an_expired_link_is_refused_as_gone() -> None:
    token = links.sign(SETTINGS, group_id=12, action="resolve", user_id=7, now=NOW)

    with pytest.raises(links.LinkExpired) as refused:
        links.verify(SETTINGS, token, now=NOW + dt.timedelta(hours=24))

    assert refused.value.status == 410
    assert "expired at 2027-03-02 09:30 UTC" in refused.value.detail


def test_the_lifetime_follows_the_setting() -> None:
    short = settings_with(alert_link_ttl_hours=2)
    token = links.sign(short, group_id=1, action="ack", user_id=1, now=NOW)

    assert links.verify(short, token, now=NOW + dt.timedelta(minutes=119)).expires_at == (
        NOW + dt.timedelta(hours=2)
    )
    with pytest.raises(links.LinkExpired):
        links.verify(short, token, now=NOW + dt.timedelta(hours=2))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t.replace("12.ack.", "13.ack.", 1),  # another group
        lambda t: t.replace(".7.", ".8.", 1),  # another person
        lambda t: t.replace(".ack.", ".resolve.", 1),  # another action
        lambda t: ".".join([*t.split(".")[:3], str(int(t.split(".")[3]) + 86400), t.split(".")[4]]),
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # another signature
        lambda t: t.rsplit(".", 1)[0],  # no signature
        lambda t: "",
        lambda t: t + "." + "x" * 300,
    ],
    ids=["group", "user", "action", "expiry", "signature", "unsigned", "empty", "long"],
)
def test_a_changed_link_is_not_found(tamper) -> None:
    token = links.sign(SETTINGS, group_id=12, action="ack", user_id=7, now=NOW)

    with pytest.raises(NotFound) as refused:
        links.verify(SETTINGS, tamper(token), now=NOW)

    assert refused.value.status == 404
    assert "not valid" in refused.value.detail


def test_an_acknowledge_link_cannot_resolve() -> None:
    ack = links.sign(SETTINGS, group_id=12, action="ack", user_id=7, now=NOW)
    resolve = links.sign(SETTINGS, group_id=12, action="resolve", user_id=7, now=NOW)

    assert links.verify(SETTINGS, ack, now=NOW, action="ack").action == "ack"
    assert links.verify(SETTINGS, resolve, now=NOW, action="resolve").action == "resolve"
    with pytest.raises(NotFound):
        links.verify(SETTINGS, ack, now=NOW, action="resolve")
    assert ack.split(".")[-1] != resolve.split(".")[-1]


def test_a_link_made_with_another_secret_key_is_refused() -> None:
    elsewhere = settings_with(secret_key="another-installation-secret-key-987654")
    token = links.sign(elsewhere, group_id=12, action="ack", user_id=7, now=NOW)

    with pytest.raises(NotFound):
        links.verify(SETTINGS, token, now=NOW)


def test_only_known_actions_and_real_ids_are_signed() -> None:
    with pytest.raises(ValidationFailed):
        links.sign(SETTINGS, group_id=12, action="delete", user_id=7)  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed):
        links.sign(SETTINGS, group_id=0, action="ack", user_id=7)
