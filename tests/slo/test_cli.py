"""`lamplighter slo …` locally against the database, and remotely against a live server."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from lamplighter.core.db import Database
from tests.conftest import make_token
from tests.slo.conftest import Org

FIXTURES = Path(__file__).parent.parent / "fixtures"


def as_json(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    """A directory of two Sloth specs on the service ``checkout``."""
    folder = tmp_path / "slos"
    folder.mkdir()
    text = (FIXTURES / "sloth" / "getting-started.yml").read_text()
    (folder / "availability.yml").write_text(text.replace("myservice", "checkout"))
    raw = (FIXTURES / "sloth" / "raw-home-wifi.yml").read_text()
    (folder / "raw.yaml").write_text(raw.replace("home-wifi", "checkout"))
    return folder


def test_apply_a_directory_then_again_changes_nothing(run_cli: Any, org: Org, specs: Path) -> None:
    first = run_cli("slo", "apply", str(specs))
    assert first.exit_code == 0, first.output
    assert "slos/availability.yml" in first.output and "slos/raw.yaml" in first.output
    again = as_json(run_cli("slo", "apply", str(specs), "-o", "json"))
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 2)
    # One file of the directory names the same origin as the whole directory did.
    single = as_json(run_cli("slo", "apply", str(specs / "raw.yaml"), "--prune", "-o", "json"))
    assert single["files"][0]["file"] == "slos/raw.yaml" and single["deleted"] == 0
    listed = as_json(run_cli("slo", "list", "-o", "json"))
    assert sorted(s["name"] for s in listed) == [
        "requests-availability",
        "wifi-client-satisfaction",
    ]
    assert {s["origin"] for s in listed} == {"slos/availability.yml", "slos/raw.yaml"}


def test_dry_run_and_prune(run_cli: Any, org: Org, specs: Path) -> None:
    dry = as_json(run_cli("slo", "apply", str(specs), "--dry-run", "-o", "json"))
    assert dry["created"] == 2 and dry["dry_run"] is True
    assert as_json(run_cli("slo", "list", "-o", "json")) == []
    run_cli("slo", "apply", str(specs))
    (specs / "raw.yaml").write_text("")  # the file defines nothing any more
    kept = as_json(run_cli("slo", "apply", str(specs), "-o", "json"))
    assert kept["deleted"] == 0 and len(as_json(run_cli("slo", "list", "-o", "json"))) == 2
    pruned = as_json(run_cli("slo", "apply", str(specs), "--prune", "-o", "json"))
    assert pruned["files"][1]["deleted"] == ["service:default/checkout/wifi-client-satisfaction"]
    assert [s["name"] for s in as_json(run_cli("slo", "list", "-o", "json"))] == [
        "requests-availability"
    ]


def test_a_file_with_a_mistake_exits_1_naming_document_and_field(
    run_cli: Any, org: Org, specs: Path
) -> None:
    bad = (FIXTURES / "slo_apply" / "sloth-objective-over-100.yml").read_text()
    (specs / "bad.yml").write_text(bad.replace("myservice", "checkout"))
    result = run_cli("slo", "apply", str(specs))
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "error: slos/bad.yml document 1 slos.0.objective: must be between 0 and 100" in output
    assert len(as_json(run_cli("slo", "list", "-o", "json"))) == 2  # the others applied
    missing = run_cli("slo", "apply", str(specs / "nowhere"))
    assert missing.exit_code == 2


def test_events_push_status_and_get_locally(run_cli: Any, org: Org, tmp_path: Path) -> None:
    slo, _ = org.slo()
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    one = as_json(
        run_cli(
            "slo", "events", "push", str(slo.id), "--good", "95", "--total", "100", "-o", "json"
        )
    )
    assert one == {"accepted": 1, "buckets": 3}
    csv_file = tmp_path / "points.csv"
    earlier = (now - dt.timedelta(hours=2)).isoformat()
    csv_file.write_text(f"at,good,total\n{earlier},5,5\n{now.isoformat()},0,0\n")
    pushed = as_json(
        run_cli("slo", "events", "push", str(slo.id), "--file", str(csv_file), "-o", "json")
    )
    assert pushed["accepted"] == 2
    wrong = run_cli("slo", "events", "push", str(slo.id), "--good", "5", "--total", "1")
    assert wrong.exit_code == 2
    assert "points.0: good events cannot outnumber" in " ".join(wrong.output.split())
    neither = run_cli("slo", "events", "push", str(slo.id))
    assert neither.exit_code == 2

    got = as_json(run_cli("slo", "get", str(slo.id), "-o", "json"))
    assert got["entity"] == "service:default/checkout" and got["objective"] == 99.9
    status = as_json(run_cli("slo", "status", str(slo.id), "-o", "json"))
    assert status["status"] == "no data" and status["reason"] == "not evaluated yet"
    table = run_cli("slo", "status", "--entity", "checkout")
    assert table.exit_code == 0 and "availability" in table.output
    unknown = run_cli("slo", "get", "999")
    assert unknown.exit_code == 1 and "no SLO 999" in unknown.output


def test_export_and_rules_export_locally(
    run_cli: Any, org: Org, specs: Path, tmp_path: Path
) -> None:
    run_cli("slo", "apply", str(specs))
    org.slo(name="built-in")
    out = tmp_path / "export.yaml"
    summary = as_json(run_cli("slo", "export", "--out", str(out), "-o", "json"))
    assert summary["documents"] == 2 and summary["skipped"] == 1
    documents = list(yaml.safe_load_all(out.read_text()))
    assert {d["metadata"]["name"] for d in documents} == {
        "requests-availability",
        "wifi-client-satisfaction",
    }
    rules_dir = tmp_path / "rules"
    written = as_json(run_cli("slo", "rules", "export", "--out", str(rules_dir), "-o", "json"))
    assert written and all(Path(item["file"]).exists() for item in written)
    text = "".join(Path(item["file"]).read_text() for item in written)
    assert "slo:sli_error:ratio_rate5m" in text and "requests-availability" in text
    stdout = run_cli("slo", "rules", "export")
    assert stdout.exit_code == 0 and "slo:sli_error:ratio_rate5m" in stdout.output


def test_remote_commands_answer_like_local_ones(
    run_cli: Any, db: Database, org: Org, specs: Path, live_server: str
) -> None:
    member = {"LAMPLIGHTER_TOKEN": make_token(db, org.member)}
    outsider = {"LAMPLIGHTER_TOKEN": make_token(db, org.outsider)}
    remote = ["--url", live_server, "slo"]
    refused = run_cli(*remote, "apply", str(specs), "-o", "json", env=outsider)
    assert refused.exit_code == 1
    assert "only members of the owning team" in refused.stdout
    applied = as_json(run_cli(*remote, "apply", str(specs), "-o", "json", env=member))
    assert applied["created"] == 2
    local = as_json(run_cli("slo", "list", "-o", "json"))
    listed = as_json(run_cli(*remote, "list", "-o", "json", env=member))
    assert listed == local

    slo, key = org.slo(name="built-in")
    assert key is not None
    # The ingest key alone is enough: no token.
    pushed = run_cli(
        *remote,
        "events",
        "push",
        str(slo.id),
        "--good",
        "9",
        "--total",
        "10",
        "--ingest-key",
        key,
        "-o",
        "json",
    )
    assert as_json(pushed)["accepted"] == 1
    wrong = run_cli(
        *remote,
        "events",
        "push",
        str(slo.id),
        "--good",
        "9",
        "--total",
        "10",
        "--ingest-key",
        "llslo_wrong",
    )
    assert wrong.exit_code == 1 and "401" in wrong.output
    status = as_json(run_cli(*remote, "status", str(slo.id), "-o", "json", env=member))
    assert status["name"] == "built-in"
    exported = run_cli(*remote, "export", env=member)
    assert (
        exported.exit_code == 0
        and "# skipped: service:default/checkout/built-in" in exported.stdout
    )
    got = as_json(run_cli(*remote, "get", str(slo.id), "-o", "json", env=member))
    assert got["source"] == "events"
