"""The README stays true: every setting is in its configuration table."""

from __future__ import annotations

from pathlib import Path

from lamplighter.core.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_documented() -> None:
    text = README.read_text()
    missing = [
        f"LAMPLIGHTER_{name.upper()}"
        for name in Settings.model_fields
        if f"`LAMPLIGHTER_{name.upper()}`" not in text
    ]
    assert not missing, f"add these to the README's configuration table: {missing}"


def test_readme_names_the_two_commands() -> None:
    text = README.read_text()
    assert "make run" in text and "make test" in text
