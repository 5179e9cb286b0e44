"""README's settings table is scripts/settings_table.py's output: each row's flag, variable, default
and "what it does" are those the settings declare, so the README cannot drift from --help."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from cosmos_workflow.settings import UpsampleSettings
from tests.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


def script() -> ModuleType:
    return load_script("scripts/settings_table.py", "settings_table")


def readme_table(header: str) -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index(header)
    return readme[start : readme.index("\n\n", start)]


def test_the_readme_holds_the_scripts_table() -> None:
    made = script()
    assert readme_table(made.HEADER) == made.table(), "run: python scripts/settings_table.py"


def test_each_row_says_what_its_setting_declares() -> None:
    made = script()
    rows = readme_table(made.HEADER).splitlines()[2:]
    cells = [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]
    assert [row[0] for row in cells] == [f"`{name}`" for name in made.ROWS]
    for name, (_, _, variable, _, what) in zip(made.ROWS, cells, strict=True):
        assert what == UpsampleSettings.model_fields[name].description
        assert variable == f"`COSMOS_{name.upper()}`"
    assert cells[0][1] == "`--offload/--keep-loaded`" and cells[3][1] == "`--model`, `--checkpoint-dir`"
