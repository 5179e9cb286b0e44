"""Each default is stated once (cosmos_workflow.defaults) and every schema that carries it agrees."""

from __future__ import annotations

import inspect

from cosmos_workflow import defaults
from cosmos_workflow.cli.plan import plan as plan_command
from cosmos_workflow.cli.upsample import upsample_prompts
from cosmos_workflow.config import RunOptions, UpsampleSettings
from cosmos_workflow.engines import EngineConfig, SamplingParams
from cosmos_workflow.planner import PlanSettings


def test_the_settings_the_plan_and_the_engine_start_from_the_same_defaults() -> None:
    settings, run = UpsampleSettings(), RunOptions()
    assert settings.max_tokens == PlanSettings().max_tokens == SamplingParams().max_tokens == 300
    assert settings.max_tokens == run.plan.max_tokens == run.sampling.max_tokens == defaults.MAX_TOKENS
    assert settings.max_model_len == PlanSettings().max_model_len == EngineConfig().max_model_len == 4096
    assert (settings.temperature, settings.top_p) == (SamplingParams().temperature, SamplingParams().top_p)
    assert (settings.max_resolution, settings.num_frames) == (480, 2) == (run.plan.max_resolution, 2)


def test_the_commands_show_the_same_defaults() -> None:
    for command in (upsample_prompts, plan_command):
        parameters = inspect.signature(command).parameters
        assert parameters["max_tokens"].default == defaults.MAX_TOKENS
        assert parameters["max_model_len"].default == defaults.MAX_MODEL_LEN
        assert parameters["max_resolution"].default == "480"
        assert parameters["num_frames"].default == defaults.NUM_FRAMES
