"""Random Backstage-shaped files through the import API: every answer is a report or a problem
document, never a 500, and importing the same files again changes nothing."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import auth, make_token, make_user, truncate_all

NAMES = st.one_of(
    st.from_regex(r"[a-z][a-z0-9]{0,6}(-[a-z0-9]{1,4})?", fullmatch=True),
    st.sampled_from(["team-a", "team-b", "guest", "Guest", "ledger", "new", "a" * 63]),
    st.text(max_size=70),
)
KINDS = st.sampled_from(["group", "user", "component", "api", "resource", "system", "template"])
REFS = st.one_of(
    NAMES,
    st.builds(lambda kind, name: f"{kind}:{name}", KINDS, NAMES),
    st.builds(lambda kind, ns, name: f"{kind}:{ns}/{name}", KINDS, NAMES, NAMES),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
REF_LISTS = st.one_of(st.lists(REFS, max_size=3), VALUES)
SPEC = st.fixed_dictionaries(
    {},
    optional={
        "owner": st.one_of(REFS, VALUES),
        "type": st.one_of(st.text(max_size=70), VALUES),
        "lifecycle": st.sampled_from(["production", "experimental", "nonsense"]),
        "parent": st.one_of(REFS, VALUES),
        "children": REF_LISTS,
        "members": REF_LISTS,
        "memberOf": REF_LISTS,
        "dependsOn": REF_LISTS,
        "providesApis": REF_LISTS,
        "system": st.one_of(REFS, VALUES),
        "profile": st.fixed_dictionaries(
            {},
            optional={
                "email": st.one_of(st.emails(), st.text(max_size=30), VALUES),
                "displayName": st.text(max_size=250),
            },
        ),
        "definition": st.one_of(
            VALUES,
            st.fixed_dictionaries(
                {
                    "$text": st.sampled_from(
                        ["./missing.yaml", "https://x.test/a.yaml", "", "a/../b"]
                    )
                }
            ),
        ),
        "targets": REF_LISTS,
    },
)
DOCUMENTS = st.fixed_dictionaries(
    {
        "apiVersion": st.sampled_from(["backstage.io/v1alpha1", "v1"]),
        "kind": st.one_of(
            st.sampled_from(
                ["Component", "API", "Resource", "System", "Group", "User", "Location", "Template"]
            ),
            st.text(max_size=12),
        ),
        "metadata": st.fixed_dictionaries(
            {"name": NAMES},
            optional={
                "namespace": NAMES,
                "title": st.text(max_size=250),
                "annotations": st.dictionaries(
                    st.sampled_from(
                        [
                            "lamplighter.io/lead",
                            "lamplighter.io/accountable",
                            "x",
                            "lamplighter.io/tier",
                        ]
                    ),
                    st.one_of(st.none(), st.text(max_size=30), st.integers(), REFS),
                    max_size=3,
                ),
                "tags": st.one_of(st.lists(st.text(max_size=12), max_size=3), VALUES),
            },
        ),
        "spec": st.one_of(SPEC, VALUES),
    }
)
FILES = st.dictionaries(
    st.sampled_from(["a.yaml", "b/catalog-info.yaml", "c.yaml"]),
    st.lists(DOCUMENTS, min_size=1, max_size=5),
    min_size=1,
    max_size=3,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(files=FILES)
def test_random_files_never_fail_the_server_and_import_idempotently(
    client: Any, db: Any, files: dict[str, list[dict[str, Any]]]
) -> None:
    truncate_all(db)
    token = make_token(db, make_user(db, role="sre"))
    body = {"files": {name: yaml.safe_dump_all(docs) for name, docs in files.items()}}
    first = client.post("/api/v1/catalog/import", json=body, headers=auth(token))
    assert first.status_code in {200, 422}, first.text
    if first.status_code != 200:
        assert first.headers["content-type"].startswith("application/problem+json")
        return
    again = client.post("/api/v1/catalog/import", json=body, headers=auth(token))
    assert again.status_code == 200, again.text
    report = again.json()
    assert (report["created"], report["updated"], report["teams_created"]) == ([], [], [])
    assert report["users_created"] == [] and report["teams_updated"] == []
    assert report["errors"] == first.json()["errors"]
    hygiene = client.get("/api/v1/catalog/hygiene", headers=auth(token))
    assert hygiene.status_code == 200
    people = client.get("/api/v1/catalog/hygiene/people", headers=auth(token))
    assert people.status_code == 200
    for ref in first.json()["created"]:
        kind, rest = ref.split(":", 1)
        page = client.get(f"/api/v1/catalog/entities/{kind}/{rest}", headers=auth(token))
        assert page.status_code == 200, (ref, page.text)
