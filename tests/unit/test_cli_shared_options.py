"""The options ``plan`` and ``upsample-prompts`` share are declared once (cli/options.SHARED) and
reach both commands alike: the same flags, help and default, and the same settings when given."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from cosmos_workflow.cli import app
from cosmos_workflow.cli.options import SHARED, given_settings, shared_options


def command(name: str) -> Any:
    return typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]


def declaration(option: Any) -> tuple[object, ...]:
    """What ``--help`` shows of an option and what it accepts."""
    return (option.opts, option.secondary_opts, option.help, option.default, option.min, option.max)


def test_both_commands_take_each_shared_option_as_declared_once() -> None:
    plan, upsample = ({p.name: p for p in command(name).params} for name in ("plan", "upsample-prompts"))
    assert set(SHARED) <= plan.keys() & upsample.keys()
    for name in SHARED:
        assert declaration(plan[name]) == declaration(upsample[name]), name


def test_a_shared_flag_becomes_the_same_setting_in_both_commands() -> None:
    args = ["p.json", "--max-tokens", "99", "--no-preprocess", "--preset", "predict2-refiner", "--any-text"]
    given = []
    for name in ("plan", "upsample-prompts"):
        ctx = command(name).make_context(name, list(args))
        given.append(given_settings(ctx, ctx.params))
    assert (
        given[0]
        == given[1]
        == {
            "max_tokens": 99,
            "preprocess_videos": False,
            "preset": "predict2-refiner",
            "ascii_only": False,
        }
    )


def test_options_placed_after_a_parameter_the_command_lacks_are_refused() -> None:
    def command_without_it(**flags: Any) -> None:
        """A command with no parameter named ``prompts_file``."""

    with pytest.raises(AssertionError, match="no parameter"):
        shared_options(prompts_file=("max_tokens",))(command_without_it)
