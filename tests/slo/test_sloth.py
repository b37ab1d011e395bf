"""Sloth specs: the vendored examples parse, and give the rules Sloth generated for them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from lamplighter.slo import sloth
from tests.conftest import require

FIXTURES = Path(__file__).parent.parent / "fixtures" / "sloth"
SPEC_FILES = sorted(FIXTURES.glob("*.yml"))
EXTRA_LABELS = {"cmd": "examplesgen.sh"}  # what Sloth's examplesgen.sh passed


def _normalised(value: Any) -> Any:
    """Collapse whitespace in every string: Sloth and we may format PromQL differently."""
    if isinstance(value, dict):
        return {key: _normalised(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalised(item) for item in value]
    if isinstance(value, str):
        return re.sub(r"\s+", " ", value).strip()
    return value


def _parse_fixture(path: Path) -> sloth.ParseResult:
    return sloth.parse(path.read_text(encoding="utf-8"), source=path.name)


def _problems(text: str, source: str = "bad.yml") -> list[str]:
    return [str(problem) for problem in sloth.parse(text, source=source).problems]


GOOD = """\
version: "prometheus/v1"
service: "myservice"
slos:
  - name: "requests-availability"
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_errors_total[{{.window}}]))
        total_query: sum(rate(http_requests_total[{{.window}}]))
    alerting:
      name: HighErrorRate
"""


def test_the_fixtures_are_all_there() -> None:
    assert [path.name for path in SPEC_FILES] == [
        "getting-started.yml",
        "home-wifi.yml",
        "multifile.yml",
        "no-alerts.yml",
        "raw-home-wifi.yml",
    ]
    assert all((FIXTURES / "_gen" / path.name).is_file() for path in SPEC_FILES)


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda path: path.name)
def test_every_vendored_spec_parses(path: Path) -> None:
    result = _parse_fixture(path)

    assert result.problems == ()
    assert result.specs


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda path: path.name)
def test_rules_equal_what_sloth_generated(path: Path) -> None:
    specs = _parse_fixture(path).specs
    generated = [
        document
        for document in yaml.safe_load_all((FIXTURES / "_gen" / path.name).read_text())
        if document is not None
    ]

    assert len(specs) == len(generated)
    for spec, expected in zip(specs, generated, strict=True):
        ours = yaml.safe_load(sloth.dump(sloth.rules(spec, extra_labels=EXTRA_LABELS)))
        ours_groups = _normalised(ours)["groups"]
        expected_groups = _normalised(expected)["groups"]
        assert [group["name"] for group in ours_groups] == [
            group["name"] for group in expected_groups
        ]
        for group, expected_group in zip(ours_groups, expected_groups, strict=True):
            names = [rule.get("record") or rule.get("alert") for rule in group["rules"]]
            expected_names = [
                rule.get("record") or rule.get("alert") for rule in expected_group["rules"]
            ]
            assert names == expected_names
            for rule, expected_rule in zip(group["rules"], expected_group["rules"], strict=True):
                assert rule == expected_rule


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda path: path.name)
def test_at_most_17_rules_per_slo(path: Path) -> None:
    for spec in _parse_fixture(path).specs:
        groups = sloth.rules(spec)
        for slo in spec.slos:
            slo_id = f"{spec.service}-{slo.name}"
            count = sum(len(g["rules"]) for g in groups if g["name"].endswith(f"-{slo_id}"))
            assert 15 <= count <= 17


def test_disabled_alerts_leave_out_the_alert_group() -> None:
    (spec,) = _parse_fixture(FIXTURES / "no-alerts.yml").specs

    names = [group["name"] for group in sloth.rules(spec)]

    assert names == [
        "sloth-slo-sli-recordings-myapp-http-availability",
        "sloth-slo-meta-recordings-myapp-http-availability",
    ]


def test_a_28_day_window_rescales_the_period_and_factors() -> None:
    (spec,) = sloth.parse(GOOD, source="good.yml").specs

    groups = sloth.rules(spec, window_days=28)

    records = [rule["record"] for rule in groups[0]["rules"]]
    assert records[-1] == "slo:sli_error:ratio_rate28d"
    meta = {rule["record"]: rule["expr"] for rule in groups[1]["rules"]}
    assert meta["slo:time_period:days"] == "vector(28)"
    page = groups[2]["rules"][0]["expr"]
    assert "(13.44 * 0.0009999999999999432)" in page


def test_a_bad_document_does_not_stop_the_good_ones() -> None:
    bad = GOOD.replace("99.9", "100")
    text = f"{GOOD}---\n{bad}---\n{GOOD.replace('myservice', 'other')}"

    result = sloth.parse(text, source="mixed.yml")

    assert [spec.service for spec in result.specs] == ["myservice", "other"]
    assert [str(problem) for problem in result.problems] == [
        "mixed.yml#2: slos.0.objective: must be between 0 and 100 (exclusive)"
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'version: "prometheus/v1"',
            'version: "prometheus/v2"',
            'bad.yml#1: version: must be "prometheus/v1"',
        ),
        ("99.9", "100", "bad.yml#1: slos.0.objective: must be between 0 and 100 (exclusive)"),
        ("99.9", "120", "bad.yml#1: slos.0.objective: must be between 0 and 100 (exclusive)"),
        ("99.9", "0", "bad.yml#1: slos.0.objective: must be between 0 and 100 (exclusive)"),
        (
            "        total_query: sum(rate(http_requests_total[{{.window}}]))\n",
            "",
            "bad.yml#1: slos.0.sli.events.total_query: required",
        ),
        (
            "http_errors_total[{{.window}}]",
            "http_errors_total[5m]",
            "bad.yml#1: slos.0.sli.events.error_query: must contain the {{.window}} placeholder",
        ),
        (
            'service: "myservice"\n',
            'service: "myservice"\nowner: me\n',
            "bad.yml#1: owner: unknown field",
        ),
        (
            "    objective: 99.9\n",
            "    objective: 99.9\n    objetive: 99\n",
            "bad.yml#1: slos.0.objetive: unknown field",
        ),
        (
            "    alerting:\n      name: HighErrorRate\n",
            "",
            "bad.yml#1: slos.0.alerting.name: "
            "required unless page_alert and ticket_alert are both disabled",
        ),
    ],
)
def test_mistakes_name_file_document_and_field(old: str, new: str, expected: str) -> None:
    assert old in GOOD
    text = f"{GOOD}---\n{GOOD.replace(old, new)}"

    result = sloth.parse(text, source="bad.yml")

    assert [str(problem) for problem in result.problems] == [expected.replace("#1", "#2")]
    assert [spec.service for spec in result.specs] == ["myservice"]


def test_a_plugin_sli_is_refused_as_unsupported() -> None:
    plugin = GOOD.replace(
        """      events:
        error_query: sum(rate(http_errors_total[{{.window}}]))
        total_query: sum(rate(http_requests_total[{{.window}}]))
""",
        """      plugin:
        id: "sloth-common/kubernetes/apiserver/availability"
        options: {}
""",
    )

    problems = _problems(plugin)

    assert problems[0] == (
        "bad.yml#1: slos.0.sli.plugin: SLI plugins are not supported "
        "(plugin 'sloth-common/kubernetes/apiserver/availability')"
    )


def test_a_raw_query_without_the_window_is_refused() -> None:
    raw = GOOD.replace(
        """      events:
        error_query: sum(rate(http_errors_total[{{.window}}]))
        total_query: sum(rate(http_requests_total[{{.window}}]))
""",
        """      raw:
        error_ratio_query: 1 - avg(up)
""",
    )

    assert _problems(raw) == [
        "bad.yml#1: slos.0.sli.raw.error_ratio_query: must contain the {{.window}} placeholder"
    ]


def test_expanding_aliases_and_huge_files_are_refused() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}" + f", *{chr(97 + i)}" * 9 + "]\n"
        for i in range(8)
    )
    huge = GOOD + "#" + "x" * sloth.MAX_FILE_BYTES + "\n"

    bomb_problems = _problems(f"{GOOD}---\n{bomb}")
    huge_problems = _problems(huge)

    assert len(bomb_problems) == 1
    assert bomb_problems[0].startswith("bad.yml#2: ")
    assert "nodes through aliases" in bomb_problems[0]
    assert huge_problems == ["bad.yml#1: file is larger than 1,048,576 bytes"]


def test_dump_is_a_rules_file() -> None:
    (spec,) = sloth.parse(GOOD, source="good.yml").specs
    groups = sloth.rules(spec)

    assert yaml.safe_load(sloth.dump(groups)) == {"groups": groups}


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda path: path.name)
def test_promtool_accepts_the_rules(path: Path, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    require(promtool is not None, "promtool")
    assert promtool is not None
    for index, spec in enumerate(_parse_fixture(path).specs):
        rules_file = tmp_path / f"rules-{index}.yml"
        rules_file.write_text(sloth.dump(sloth.rules(spec, extra_labels=EXTRA_LABELS)))
        checked = subprocess.run(
            [promtool, "check", "rules", str(rules_file)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
