"""The parsed-YAML cache of imports: unchanged files are not parsed again, and an import with the
cache reports and writes exactly what one without it would."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lamplighter.catalog import backstage_parse, service
from lamplighter.catalog.yaml_cache import DocumentCache, cache_for
from lamplighter.core.settings import Settings
from tests.catalog.test_backstage import FIXTURES, component, run, write
from tests.conftest import SYSTEM


@pytest.fixture
def acme(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / "acme", tmp_path / "acme"))


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the files whose YAML was parsed."""
    names: list[str] = []
    real = backstage_parse.load_documents

    def spy(name: str, data: bytes) -> Any:
        names.append(Path(name).name)
        return real(name, data)

    monkeypatch.setattr(backstage_parse, "load_documents", spy)
    yield names


def test_a_second_import_parses_only_the_changed_file(
    db: Any, settings: Settings, acme: Path, parsed: list[str]
) -> None:
    first = run(db, settings, acme)
    files = len(parsed)
    assert first.errors == [] and files > 1
    assert cache_for(settings.data_dir, str(acme.resolve())).path.exists()

    parsed.clear()
    again = run(db, settings, acme)
    assert parsed == [], "unchanged files were parsed again"
    assert again.unchanged == len(first.created) and again.updated == []

    path = acme / "payments" / "catalog-info.yaml"
    path.write_text(path.read_text().replace("title: Ledger\n", "title: General ledger\n"))
    changed = run(db, settings, acme)
    assert parsed == ["catalog-info.yaml"]
    assert changed.updated == ["service:default/ledger"]
    with db.sessionmaker() as session:
        assert service.get_by_ref(session=session, ref="ledger").title == "General ledger"


def test_an_entity_edited_by_hand_is_restored_from_its_unchanged_file(
    db: Any, settings: Settings, acme: Path, parsed: list[str]
) -> None:
    run(db, settings, acme)
    with db.transaction() as session:
        service.update(
            session=session, actor=SYSTEM, ref="ledger", changes={"title": "Edited by hand"}
        )
    parsed.clear()
    report = run(db, settings, acme)
    assert parsed == []  # the documents came from the cache …
    assert report.updated == ["service:default/ledger"]  # … and were still compared
    with db.sessionmaker() as session:
        assert service.get_by_ref(session=session, ref="ledger").title == "Ledger"


def test_a_corrupt_cache_or_one_of_another_loader_is_ignored(
    db: Any, settings: Settings, acme: Path, parsed: list[str]
) -> None:
    first = run(db, settings, acme)
    cache_path = cache_for(settings.data_dir, str(acme.resolve())).path
    files = len(parsed)

    cache_path.write_bytes(b'{"version": "0:another loader", "entries": {')  # cut short
    parsed.clear()
    report = run(db, settings, acme)
    assert len(parsed) == files and report.unchanged == len(first.created)

    text = cache_path.read_text()
    cache_path.write_text(text.replace(DocumentCache(cache_path).version, "0:another loader"))
    parsed.clear()
    report = run(db, settings, acme)
    assert len(parsed) == files and report.errors == []

    parsed.clear()
    run(db, settings, acme)
    assert parsed == [], "the cache was not written again after being ignored"


def test_values_json_cannot_hold_exactly_are_parsed_each_time(
    db: Any, settings: Settings, tmp_path: Path, parsed: list[str]
) -> None:
    root = tmp_path / "dated"
    write(
        root,
        "org/catalog-info.yaml",
        "apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata: {name: payments}\n"
        "spec: {type: team, members: [lead]}\n---\n"
        "apiVersion: backstage.io/v1alpha1\nkind: User\nmetadata: {name: lead}\n"
        "spec: {profile: {email: lead@example.com}}\n",
    )
    write(root, "svc/catalog-info.yaml", component("dated", since="2024-01-02"))
    text = (root / "svc" / "catalog-info.yaml").read_text().replace("'2024-01-02'", "2024-01-02")
    (root / "svc" / "catalog-info.yaml").write_text(text)  # unquoted: a YAML timestamp

    first = run(db, settings, root)
    assert first.errors == [] and first.created == ["service:default/dated"]
    parsed.clear()
    again = run(db, settings, root)
    assert parsed == ["catalog-info.yaml"], "a file with a timestamp came from the cache"
    assert again.unchanged == 1 and again.updated == []
    with db.sessionmaker() as session:
        entity = service.get_by_ref(session=session, ref="dated")
        assert entity.spec_extra == {"since": "2024-01-02"}
