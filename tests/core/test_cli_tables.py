"""CLI tables fit the terminal: nothing is cut at 80 columns when there is more room, long
cells wrap onto more lines when there is less, and ``--output json`` carries every value."""

from __future__ import annotations

import json
from typing import Any

import typer
from typer.testing import CliRunner

from lamplighter.core.clikit import Output, OutputOpt, emit

LONG = "service:payments/" + "ledger-reconciliation-" * 4 + "worker"  # 111 characters
ROWS = [
    {"ref": LONG, "owner": "payments", "note": "[needs review]"},
    {"ref": "service:default/search", "owner": "search", "note": ""},
]

app = typer.Typer()


@app.command()
def show(output: OutputOpt = Output.TABLE, one: bool = False) -> None:
    emit(ROWS[0] if one else ROWS, output, title="Entities")


def run(*args: str, columns: int | None) -> str:
    env = {"COLUMNS": str(columns)} if columns else {}
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def column(output: str, index: int) -> str:
    """One column's text from top to bottom, line breaks taken out (a folded value joined)."""
    cells = [line.split("│")[index + 1] for line in output.splitlines() if line.count("│") > 1]
    return "".join(cell.strip() for cell in cells)


def test_a_wide_terminal_shows_long_values_whole_on_one_line() -> None:
    output = run(columns=200)
    assert any(LONG in line for line in output.splitlines()), output
    assert "…" not in output
    assert max(len(line) for line in output.splitlines()) <= 200
    assert "[needs review]" in output, "values are not read as Rich markup"


def test_a_narrow_terminal_wraps_long_cells_instead_of_cutting_them() -> None:
    output = run(columns=60)
    lines = output.splitlines()
    assert max(len(line) for line in lines) <= 60
    assert "…" not in output
    assert LONG not in output  # it did not fit on one line…
    assert LONG in column(output, 0)  # …so it is folded onto several, every character kept
    record = run("--one", columns=60)
    assert "…" not in record and LONG in column(record, 1)


def test_a_pipe_gets_the_table_at_its_natural_width() -> None:
    output = run(columns=None)  # CliRunner is no terminal, and COLUMNS is not set
    assert any(LONG in line for line in output.splitlines()), output


def test_json_carries_every_value_in_full() -> None:
    data: Any = json.loads(run("--output", "json", columns=60))
    assert data[0]["ref"] == LONG and data[0]["note"] == "[needs review]"
