"""The seed's remaining knobs as settings: ``offload_prompt_upsampler``, ``num_gpu``,
``cuda_devices`` (flags, file, environment, keywords) and the default ``checkpoint_dir``."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from cosmos_workflow.checkpoint.discovery import UPSAMPLER_CHECKPOINT
from cosmos_workflow.cli import app
from cosmos_workflow.cli.options import given_settings
from cosmos_workflow.config import (
    CONFIG_FILE,
    RunOptions,
    options_from_keywords,
    resolve_model,
    resolve_settings,
    run_options,
)
from cosmos_workflow.errors import ConfigError, UsageError
from cosmos_workflow.executors.launcher import child_arguments, child_environment
from cosmos_workflow.executors.local import LocalExecutor, visible_index


def parse_flags(*args: str) -> dict[str, object]:
    """The ``upsample-prompts`` command line, parsed by the real command into settings."""
    command = typer.main.get_command(app).commands["upsample-prompts"]  # type: ignore[attr-defined]
    ctx = command.make_context("upsample-prompts", ["p.json", *args])
    return given_settings(ctx, ctx.params)


def options_from_flags(*args: str, cwd: Path) -> RunOptions:
    resolved = resolve_settings(flags={"upsample": parse_flags(*args)}, env={}, cwd=cwd)
    return run_options(resolved.settings.upsample)


def make_checkpoint(root: Path) -> Path:
    folder = root / UPSAMPLER_CHECKPOINT
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder


# ------------------------------------------------------------------ offload, num_gpu, cuda_devices


def test_the_flags_become_settings(tmp_path: Path) -> None:
    assert parse_flags("--keep-loaded", "--num-gpu", "2", "--cuda-devices", "2,3", "--engine", "fake") == {
        "offload_prompt_upsampler": False,
        "num_gpu": 2,
        "cuda_devices": "2,3",
        "engine": "fake",
    }
    assert parse_flags("--offload") == {"offload_prompt_upsampler": True}
    options = options_from_flags("--keep-loaded", "--num-gpu", "2", "--engine", "fake", cwd=tmp_path)
    assert (options.offload_prompt_upsampler, options.num_gpu, options.cuda_devices) == (False, 2, None)


def test_defaults_are_the_seeds(tmp_path: Path) -> None:
    options = options_from_flags("--engine", "fake", cwd=tmp_path)
    assert (options.offload_prompt_upsampler, options.num_gpu, options.cuda_devices) == (True, 1, None)


def test_the_file_and_the_environment_set_them(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[upsample]\nnum_gpu = 2\ncuda_devices = [0, 1]\noffload_prompt_upsampler = false\n")
    upsample = resolve_settings(config_file=config, env={}).settings.upsample
    assert (upsample.num_gpu, upsample.cuda_devices, upsample.offload_prompt_upsampler) == (2, "0,1", False)
    env = {"COSMOS_NUM_GPU": "3", "COSMOS_CUDA_DEVICES": "4, 5,6", "COSMOS_OFFLOAD_PROMPT_UPSAMPLER": "true"}
    resolved = resolve_settings(config_file=config, env=env)
    upsample = resolved.settings.upsample
    assert (upsample.num_gpu, upsample.cuda_devices, upsample.offload_prompt_upsampler) == (3, "4,5,6", True)
    assert resolved.sources["upsample.num_gpu"] == "env COSMOS_NUM_GPU"


def test_orchestrator_keywords_take_the_flags_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / CONFIG_FILE).write_text('[upsample]\nengine = "fake"\nnum_gpu = 4\n')
    options = options_from_keywords(num_gpu=2, cuda_devices=[6, 7], offload_prompt_upsampler=False)
    assert (options.num_gpu, options.cuda_devices, options.offload_prompt_upsampler) == (2, "6,7", False)
    assert options_from_keywords(num_gpu=1, cuda_devices=7).cuda_devices == "7"


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"cuda_devices": "0,a"}, r"cuda_devices = '0,a' \(flag\): Value error, list GPU indices"),
        ({"cuda_devices": "1,1"}, "a GPU is listed twice"),
        ({"num_gpu": 0}, r"num_gpu = 0 \(flag\)"),
        (
            {"num_gpu": 2, "cuda_devices": "3"},
            r"num_gpu is 2 but cuda_devices '3' lists 1 GPU\(s\); .*--cuda-devices 0,1\) or lower --num-gpu",
        ),
        ({"num_gpu": 2, "device": "cuda:0"}, "device 'cuda:0' pins one GPU but num_gpu is 2"),
    ],
)
def test_bad_gpu_settings_are_one_line(update: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        resolve_settings(flags={"upsample": update}, env={}, cwd=Path("/"))
    assert "\n" not in str(caught.value)


def test_a_bad_combination_from_the_file_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[upsample]\nnum_gpu = 2\ncuda_devices = "0"\n')
    with pytest.raises(ConfigError, match="num_gpu is 2 but cuda_devices '0'") as caught:
        resolve_settings(config_file=config, env={})
    assert not isinstance(caught.value, UsageError)


def test_one_process_runs_on_the_first_listed_gpu() -> None:
    assert visible_index("3", {}) == 3
    assert visible_index("3", {"CUDA_VISIBLE_DEVICES": "2,3"}) == 1
    assert visible_index("GPU-ab12", {"CUDA_VISIBLE_DEVICES": "GPU-ff00,GPU-ab12"}) == 1
    with pytest.raises(
        ConfigError, match=r"GPU '5', which this process cannot see \(CUDA_VISIBLE_DEVICES=2,3\)"
    ):
        visible_index("5", {"CUDA_VISIBLE_DEVICES": "2,3"})
    options = RunOptions(engine={"engine": "hf", "model": "m"}, cuda_devices="3,1")
    assert LocalExecutor().adapt(options).engine.device == "cuda:3"
    given = options.model_copy(update={"engine": options.engine.model_copy(update={"device": "cpu"})})
    assert LocalExecutor().adapt(given).engine.device == "cpu"  # --device wins


def test_the_torchrun_child_gets_exactly_these_options(tmp_path: Path) -> None:
    """Every option that shapes the run survives RunOptions -> flags -> the real parser -> RunOptions
    (workers and prefetch_batches, which have no flag, go by environment: see test_num_gpu)."""
    options = RunOptions(
        plan={"preprocess": False, "max_resolution": "auto", "num_frames": 3, "frame_sampling": "uniform"}
        | {"max_tokens": 64, "max_model_len": 2048},
        sampling={"temperature": 0.25, "top_p": 0.9, "max_tokens": 64, "seed": 7},
        engine={"engine": "hf", "model": "tiny-random", "max_model_len": 2048, "max_images_per_prompt": 3}
        | {"device": "cpu", "options": {"static_cache": False, "batch_bucket": 32, "note": "a b"}},
        batch_size="auto",
        first_batch=16,
        on_error="original",
        num_gpu=2,
        cuda_devices="0,1",
        force=True,
    )
    args = child_arguments(options)
    assert "--force" in args
    flags = [a for a in args if a != "--force"]
    again = run_options(resolve_settings(flags={"upsample": parse_flags(*flags)}, env={}).settings.upsample)
    assert again.model_copy(update={"force": True}) == options

    with_clips = RunOptions(engine={"engine": "fake", "model": "fake"}, clips_dir=tmp_path / "my clips")
    parsed = parse_flags(*child_arguments(with_clips))
    assert parsed["clips_dir"] == tmp_path / "my clips" and "clips" not in parsed
    assert "first_batch" not in parsed  # off: the ranks' (and the remote host's) command as before


def test_the_torchrun_child_gets_the_refiners_options(tmp_path: Path) -> None:
    """ASCII-only answers and the encoder go by flags; the system prompt (a preset's or a file's
    text) by the environment: the ranks count and send what this process planned."""
    (tmp_path / "t.json").write_text("{}")
    options = RunOptions(
        plan={"max_tokens": 512, "system_prompt": "Rewrite it.\nIn detail."},
        sampling={"temperature": 0.0, "max_tokens": 512, "ascii_only": True},
        engine={"engine": "fake", "model": "fake"},
        encoder_tokenizer=tmp_path / "t.json",
        encoder_limit=300,
    )
    flags = parse_flags(*child_arguments(options))
    env = child_environment(options, {})
    again = run_options(resolve_settings(flags={"upsample": flags}, env=env).settings.upsample)
    assert again.model_copy(update={"clips_dir": None}) == options


# ------------------------------------------------------------------ checkpoint_dir default


def test_without_a_model_the_working_directorys_checkpoint_is_used(tmp_path: Path) -> None:
    found = make_checkpoint(tmp_path / "checkpoints")
    settings = resolve_settings(flags={"upsample": {"engine": "hf"}}, env={}, cwd=tmp_path).settings.upsample
    assert resolve_model(settings, env={}, cwd=tmp_path) == str(found)


def test_cosmos_checkpoint_dir_wins_over_the_working_directory(tmp_path: Path) -> None:
    make_checkpoint(tmp_path / "work" / "checkpoints")
    elsewhere = make_checkpoint(tmp_path / "cosmos-checkpoints")
    settings = resolve_settings(flags={"upsample": {"engine": "hf"}}, env={}, cwd=tmp_path).settings.upsample
    env = {"COSMOS_CHECKPOINT_DIR": str(tmp_path / "cosmos-checkpoints")}
    assert resolve_model(settings, env=env, cwd=tmp_path / "work") == str(elsewhere)
    empty = {"COSMOS_CHECKPOINT_DIR": str(tmp_path / "nothing-here")}
    assert resolve_model(settings, env=empty, cwd=tmp_path / "work") == str(
        tmp_path / "work" / "checkpoints" / UPSAMPLER_CHECKPOINT
    )


def test_nothing_found_says_where_it_looked_in_one_line(tmp_path: Path) -> None:
    settings = resolve_settings(flags={"upsample": {"engine": "hf"}}, env={}, cwd=tmp_path).settings.upsample
    with pytest.raises(ConfigError) as caught:
        resolve_model(settings, env={}, cwd=tmp_path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("no model given")
    where = tmp_path / "checkpoints" / "nvidia" / "Cosmos-UpsamplePrompt1-12B-Transfer"
    assert f"{where} (the working directory); $COSMOS_CHECKPOINT_DIR is not set" in message
    assert "--model tiny-random" in message
    env = {"COSMOS_CHECKPOINT_DIR": "/data/ckpts"}
    with pytest.raises(ConfigError, match=r"at /data/ckpts/nvidia/Cosmos-UpsamplePrompt1-12B-Transfer "):
        resolve_model(settings, env=env, cwd=tmp_path)


def test_the_default_applies_to_file_and_keyword_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COSMOS_CHECKPOINT_DIR", raising=False)
    found = make_checkpoint(tmp_path / "checkpoints")
    (tmp_path / CONFIG_FILE).write_text('[upsample]\nengine = "hf"\nmax_tokens = 100\n')
    assert options_from_keywords().engine.model == str(found)  # the file names no model
    assert options_from_keywords(checkpoint_dir=None).engine.model == str(found)
    assert options_from_keywords(checkpoint_dir="tiny-random").engine.model == "tiny-random"
