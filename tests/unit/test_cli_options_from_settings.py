"""Each flag that sets an ``[upsample]`` setting takes its help, default and bounds from the
setting's declaration (cosmos_workflow.settings), so the two cannot drift apart."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cosmos_workflow.cli import app
from cosmos_workflow.cli.options import OPTIONS, setting_of
from cosmos_workflow.settings import UpsampleSettings

COMMANDS = ("plan", "upsample-prompts")
#: flags whose default is "not given" rather than the setting's (a preset may set them)
NOT_GIVEN = {"ascii_only", "engine_option"}


def params(command: str) -> dict[str, Any]:
    click_command = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    return {param.name: param for param in click_command.params}


def flags_of_settings() -> list[tuple[str, Any]]:
    return [
        (name, param) for command in COMMANDS for name, param in params(command).items() if name in OPTIONS
    ]


@pytest.mark.parametrize(("name", "param"), flags_of_settings())
def test_a_flag_says_what_its_setting_says(name: str, param: Any) -> None:
    setting = setting_of(name)
    assert setting.description and param.help.startswith(setting.description)


@pytest.mark.parametrize(("name", "param"), flags_of_settings())
def test_a_flag_starts_from_its_setting_s_default_within_its_bounds(name: str, param: Any) -> None:
    setting = setting_of(name)
    if name in NOT_GIVEN:
        assert param.default is None
    else:  # as it is, or as text where the flag reads text: '480' or 'auto' for max_resolution
        assert param.default in (setting.default, str(setting.default))
    bounds = {
        key: getattr(rule, key)
        for rule in setting.metadata
        for key in ("ge", "gt", "le")
        if hasattr(rule, key)
    }
    assert (param.min, param.max) == (
        bounds.get("ge", bounds.get("gt")),
        bounds.get("le"),
    )


def test_no_command_declares_a_setting_s_flag_of_its_own() -> None:
    for command in COMMANDS:
        own = {name for name in params(command) if name not in OPTIONS}
        assert not own & UpsampleSettings.model_fields.keys(), command
        assert own.isdisjoint({"preprocess", "engine_option", "offload"}), command


def test_every_run_setting_but_three_is_a_flag_and_each_is_described() -> None:
    fields = UpsampleSettings.model_fields
    flagged = [setting_of(name) for name in OPTIONS]
    assert {name for name, field in fields.items() if not any(field is f for f in flagged)} == {
        "workers",
        "prefetch_batches",
        "system_prompt",
    }
    assert all(field.description for field in fields.values())


def test_a_flag_adds_only_what_the_command_line_needs() -> None:
    upsample = params("upsample-prompts")
    assert upsample["max_tokens"].help == "tokens reserved for the answer"
    assert upsample["preprocess"].help == (
        "fit frames to the token budget; --no-preprocess sends them as stock Cosmos does"
    )
    assert upsample["engine_option"].help.endswith("(e.g. base_url, timeout): KEY=VALUE, repeatable")


@pytest.mark.parametrize("command", COMMANDS)
def test_the_help_page_shows_each_description_whole(command: str) -> None:
    """Rich reads ``[word]`` as markup: a description or help must escape it to be shown."""
    page = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "400"})
    assert page.exit_code == 0
    for name in params(command).keys() & OPTIONS.keys():
        description = setting_of(name).description
        assert description and description in page.output, name
    if command == "upsample-prompts":
        assert "run on the GPU host of [remote] over SSH" in page.output
