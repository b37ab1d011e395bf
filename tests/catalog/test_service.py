"""Catalog service: ownership, names, references, relations, traversal, search, hygiene."""

from __future__ import annotations

from typing import Any

import pytest

from lamplighter.catalog import graph, search, service
from lamplighter.core import identity
from lamplighter.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from tests.catalog.conftest import make_entity
from tests.conftest import SYSTEM, make_team, make_user


@pytest.fixture
def org(db: Any) -> dict[str, Any]:
    lead = make_user(db, email="lead@example.com")
    dev = make_user(db, email="dev@example.com")
    outsider = make_user(db, email="out@example.com")
    make_team(db, slug="payments", lead=lead, members=[dev])
    make_team(db, slug="search", lead=outsider)
    return {"lead": lead, "dev": dev, "outsider": outsider}


def test_accountable_defaults_to_the_team_lead(db: Any, org: dict[str, Any]) -> None:
    entity = make_entity(db, "ledger", "payments", title="Ledger")
    assert entity.accountable_user_id == org["lead"].id
    with db.sessionmaker() as session:
        owner = service.who_owns(session=session, ref="ledger")
    assert owner.team is not None and owner.team.slug == "payments"
    assert owner.accountable is not None and owner.accountable.email == "lead@example.com"
    assert owner.problems == []


def test_accountable_must_be_in_the_owner_team(db: Any, org: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed) as caught:
        make_entity(db, "ledger", "payments", accountable="out@example.com")
    assert caught.value.errors[0].field == "body.accountable"
    assert "not a member of the owning team payments" in caught.value.errors[0].reason


def test_missing_owner_and_unknown_references_are_named(db: Any, org: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed) as caught:
        make_entity(db, "x", "nobody", depends_on=["resource:ghost-db"])
    fields = {e.field for e in caught.value.errors}
    assert "body.owner" in fields
    with pytest.raises(ValidationFailed) as caught:
        make_entity(db, "x", "payments", depends_on=["resource:ghost-db"], provides_apis=["nope"])
    assert {e.field for e in caught.value.errors} == {"body.depends_on.0", "body.provides_apis.0"}
    with pytest.raises(ValidationFailed) as caught:
        make_entity(db, "x", "payments", depends_on=["ghost-db"])
    assert caught.value.errors[0].reason == "no catalog entity 'ghost-db'"


def test_names_are_unique_ignoring_case_and_follow_the_rules(db: Any, org: dict[str, Any]) -> None:
    make_entity(db, "Ledger", "payments")
    with pytest.raises(Conflict):
        make_entity(db, "ledger", "payments")
    for bad in ("-x", "a--b", "a" * 64, "with space"):
        with pytest.raises(ValidationFailed) as caught:
            make_entity(db, bad, "payments")
        assert caught.value.errors[0].field == "body.name"
    make_entity(db, "ledger", "payments", kind="api")  # another kind may share the name


def test_naming_policy_per_kind(db: Any, org: dict[str, Any]) -> None:
    rules = {"resource": "^{team}-"}
    with db.transaction() as session, pytest.raises(ValidationFailed) as caught:
        service.create(
            session=session,
            actor=SYSTEM,
            data=service.EntityInput(kind="resource", name="orders-db", owner="payments"),
            name_rules=rules,
        )
    assert "^{team}-" in caught.value.errors[0].reason
    with db.transaction() as session:
        service.create(
            session=session,
            actor=SYSTEM,
            data=service.EntityInput(kind="resource", name="payments-db", owner="payments"),
            name_rules=rules,
        )


def test_only_the_owning_team_may_change_it(db: Any, org: dict[str, Any]) -> None:
    make_entity(db, "ledger", "payments")
    with db.sessionmaker() as session:
        outsider = identity._actor_for(session, org["outsider"], kind="user")
        dev = identity._actor_for(session, org["dev"], kind="user")
    with db.transaction() as session, pytest.raises(Forbidden):
        service.update(session=session, actor=outsider, ref="ledger", changes={"title": "mine"})
    with db.transaction() as session:
        service.update(
            session=session, actor=dev, ref="ledger", changes={"title": "Ledger v2", "tier": 1}
        )
    with db.sessionmaker() as session:
        entity = service.get_by_ref(session=session, ref="service:default/LEDGER")
        assert (entity.title, entity.tier) == ("Ledger v2", 1)
        history = service.history(session=session, ref="ledger")
    assert [h.action for h in history] == ["catalog.update", "catalog.create"]
    assert history[0].diff["after"] == {"tier": 1, "title": "Ledger v2"}


def test_relations_both_ways(db: Any, org: dict[str, Any]) -> None:
    make_entity(db, "payments-db", "payments", kind="resource", type="database")
    make_entity(db, "payments-api", "payments", kind="api", type="openapi")
    make_entity(
        db,
        "ledger",
        "payments",
        depends_on=["resource:payments-db"],
        provides_apis=["payments-api"],
    )
    make_entity(
        db, "checkout", "search", consumes_apis=["payments-api"], depends_on=["service:ledger"]
    )
    with db.sessionmaker() as session:
        db_entity = service.get_by_ref(session=session, ref="resource:payments-db")
        rel = service.relations_of(session=session, entity_id=db_entity.id)
        assert [e.name for e in rel["dependency_of"]] == ["ledger"]
        api = service.get_by_ref(session=session, ref="api:payments-api")
        rel = service.relations_of(session=session, entity_id=api.id)
        assert [e.name for e in rel["api_provided_by"]] == ["ledger"]
        assert [e.name for e in rel["api_consumed_by"]] == ["checkout"]


def test_reverse_traversal_with_depth_and_cycles(db: Any, org: dict[str, Any]) -> None:
    make_entity(db, "db", "payments", kind="resource")
    make_entity(db, "a", "payments", depends_on=["resource:db"])
    make_entity(db, "b", "payments", depends_on=["service:a"])
    make_entity(db, "c", "payments", depends_on=["service:b"])
    with db.transaction() as session:  # a depends on c: the cycle a -> c -> b -> a
        service.update(
            session=session,
            actor=SYSTEM,
            ref="a",
            changes={"depends_on": ["resource:db", "service:c"]},
        )
    with db.sessionmaker() as session:
        root = service.get_by_ref(session=session, ref="resource:db")
        walk = graph.traverse(session=session, root_id=root.id, reverse=True, depth=5)
        names = {
            i: e.name
            for i, e in graph.entities(
                session, {r.entity_id for r in walk.reached} | {i for c in walk.cycles for i in c}
            ).items()
        }
        assert [(names[r.entity_id], r.depth) for r in walk.reached] == [
            ("a", 1),
            ("b", 2),
            ("c", 3),
        ]
        assert [[names[i] for i in cycle] for cycle in walk.cycles] == [["a", "b", "c", "a"]]
        shallow = graph.traverse(session=session, root_id=root.id, reverse=True, depth=1)
        assert len(shallow.reached) == 1


def test_search_by_words_with_filters(db: Any, org: dict[str, Any]) -> None:
    make_entity(
        db, "payments-api", "payments", kind="api", description="Charges cards", tags=["pci"]
    )
    make_entity(db, "ledger", "payments", title="General ledger", tags=["pci", "money"])
    make_entity(db, "search-ui", "search", description="Finds products")
    with db.sessionmaker() as session:

        def names(text: str, **filters: Any) -> list[str]:
            return [
                e.name
                for e in search.search(
                    session=session, text=text, filters=service.ListFilters(**filters)
                )
            ]

        assert names("pay") == ["payments-api"]
        assert names("charge card") == ["payments-api"]
        assert set(names("pci")) == {"payments-api", "ledger"}
        assert names("pci", kind="service") == ["ledger"]
        assert names("ledger general") == ["ledger"]
        assert names("nothing-like-this") == []
        assert names("products", tag="pci") == []


def test_hygiene_lists_entities_without_a_valid_owner(db: Any, org: dict[str, Any]) -> None:
    make_entity(db, "ledger", "payments", accountable="dev@example.com")
    make_entity(db, "fine", "payments")
    with db.transaction() as session:
        team = identity.get_team(session=session, slug="payments")
        identity.remove_member(
            session=session, actor=SYSTEM, slug="payments", user_id=org["dev"].id
        )
        assert team is not None
    with db.sessionmaker() as session:
        problems = {
            e.name: why for e, why in service.hygiene(session=session, after_id=None, limit=50)
        }
        assert problems == {
            "ledger": "the accountable person is no longer in the owning team (nor a team above it)"
        }
        owner = service.who_owns(session=session, ref="ledger")
        assert owner.problems == ["dev@example.com is no longer a member of payments"]


def test_delete_removes_relations_and_is_audited(db: Any, org: dict[str, Any]) -> None:
    make_entity(db, "db", "payments", kind="resource")
    make_entity(db, "a", "payments", depends_on=["resource:db"])
    with db.transaction() as session:
        service.delete(session=session, actor=SYSTEM, ref="resource:db")
    with db.sessionmaker() as session:
        a = service.get_by_ref(session=session, ref="a")
        assert service.relations_of(session=session, entity_id=a.id)["depends_on"] == []
        with pytest.raises(NotFound):
            service.get_by_ref(session=session, ref="resource:db")
        assert search.search(session=session, text="db", filters=service.ListFilters()) == []
