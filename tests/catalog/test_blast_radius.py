"""The entity page's blast radius: what breaks if this breaks, to any depth the CLI goes."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lamplighter.catalog import graph
from lamplighter.core.db import Database
from tests.catalog.conftest import make_entity
from tests.conftest import make_team
from tests.helpers import HTMX, found, person, sign_in, text


def blast(page: Any) -> str:
    return found(r'<section class="card blast-radius".*?</section>', page.text, re.S).group(0)


@pytest.fixture
def chain(db: Database) -> Any:
    """edge → api-gw → orders → ledger → core-db, and twelve more services on core-db itself."""
    dev = person(db, email="dev@example.com")
    make_team(db, slug="payments", lead=dev)
    make_entity(db, "core-db", "payments", kind="resource", type="database")
    make_entity(db, "ledger", "payments", depends_on=["resource:core-db"])
    make_entity(db, "orders", "payments", depends_on=["service:ledger"])
    make_entity(db, "api-gw", "payments", depends_on=["service:orders"])
    make_entity(db, "edge", "payments", depends_on=["service:api-gw"])
    for i in range(12):
        make_entity(db, f"fan-{i:02}", "payments", depends_on=["resource:core-db"])
    return dev


def test_blast_radius_goes_as_deep_as_asked_with_a_count_per_hop(
    client: TestClient, db: Database, chain: Any
) -> None:
    sign_in(client, chain)
    default = client.get("/catalog/resource/default/core-db")
    section = blast(default)
    assert "Blast radius" in section and "What breaks if core-db breaks" in text(section)
    assert "15 entities" in text(section)
    assert "1 hop: 13 · 2 hops: 1 · 3 hops: 1" in text(section)
    assert ">edge</text>" not in section  # four hops away: beyond the default three
    deep = client.get("/catalog/resource/default/core-db?depth=4")
    section = blast(deep)
    assert "16 entities" in text(section)
    assert "1 hop: 13 · 2 hops: 1 · 3 hops: 1 · 4 hops: 1" in text(section)
    assert ">edge</text>" in section and 'href="/catalog/service/default/edge"' in section
    assert '<option value="4" selected>4 hops</option>' in section
    # The CLI's maximum depth is offered, and asked for directly it answers.
    assert f'<option value="{graph.MAX_DEPTH}"' in section
    assert client.get(f"/catalog/resource/default/core-db?depth={graph.MAX_DEPTH}").is_success
    too_deep = client.get(f"/catalog/resource/default/core-db?depth={graph.MAX_DEPTH + 1}")
    assert too_deep.status_code == 422 and "depth" in text(too_deep)


def test_a_crowded_hop_folds_into_more_which_expands(
    client: TestClient, db: Database, chain: Any
) -> None:
    sign_in(client, chain)
    section = blast(client.get("/catalog/resource/default/core-db?depth=4"))
    assert section.count('class="dep-node"') == 8 + 3  # eight at hop 1, one at each other hop
    more = found(r'<a class="dep-more dep-node" href="([^"]+)">', section).group(1)
    assert "+5 more" in section
    assert more.replace("&amp;", "&") == (
        "/catalog/resource/default/core-db?depth=4&expand=1#blast-radius"
    )
    expanded = blast(client.get(more.replace("&amp;", "&")))
    assert "+5 more" not in expanded and expanded.count('class="dep-node"') == 13 + 3
    assert "Fold the long hops again" in expanded


def test_blast_radius_of_a_leaf_says_nothing_breaks_and_htmx_swaps_the_section(
    client: TestClient, db: Database, chain: Any
) -> None:
    sign_in(client, chain)
    leaf = blast(client.get("/catalog/service/default/edge"))
    assert "Nothing depends on edge" in text(leaf)
    swapped = client.get("/catalog/resource/default/core-db?depth=2", headers=HTMX)
    assert swapped.status_code == 200 and "1 hop: 13 · 2 hops: 1" in text(blast(swapped))
    # The dependency graph keeps its own one- or two-hop switch.
    graph_page = client.get("/catalog/resource/default/core-db?hops=1")
    assert 'aria-current="page">1 hop' in graph_page.text


def test_a_wide_radius_stays_bounded_and_fast(client: TestClient, db: Database, chain: Any) -> None:
    with db.transaction() as session:
        from lamplighter.catalog import service

        root = service.get_by_ref(session=session, ref="resource:core-db")
        root_id = root.id
    walk = None
    with db.sessionmaker() as session:
        walk = graph.traverse(session=session, root_id=root_id, reverse=True, depth=5, max_nodes=3)
    assert walk.truncated and len(walk.reached) <= 4
    sign_in(client, chain)
    client.get("/catalog/resource/default/core-db?depth=10")
    started = time.perf_counter()
    page = client.get("/catalog/resource/default/core-db?depth=10")
    assert page.status_code == 200
    assert time.perf_counter() - started < 0.5
