"""run_options takes each setting by name: none is copied by hand, so none can be forgotten."""

from __future__ import annotations

from pathlib import Path

from cosmos_workflow.config import RunOptions, UpsampleSettings, run_options
from cosmos_workflow.settings import RunSettings

CHANGED = UpsampleSettings(
    engine="openai",
    model="served",
    preprocess_videos=True,
    max_resolution=320,
    num_frames=3,
    frame_sampling="uniform",
    device="cpu",
    engine_options={"timeout": 5},
    batch_size=3,
    first_batch=2,
    max_model_len=2048,
    max_tokens=99,
    temperature=0.2,
    top_p=0.9,
    seed=7,
    on_error="original",
    clips_dir=Path("clips"),
    workers=4,
    prefetch_batches=5,
    offload_prompt_upsampler=False,
    num_gpu=2,
    cuda_devices="0,1",
    ray_address="head:6379",
    ray_actors=2,
    encoder_tokenizer=Path("t5-tokenizer"),
    encoder_limit=77,
)


def test_every_setting_reaches_the_run_under_its_name() -> None:
    run = run_options(CHANGED, output=Path("out.json"), force=True)
    defaults = RunOptions()

    same = set(RunOptions.model_fields) & set(UpsampleSettings.model_fields) - {"engine"}
    assert same, "the settings and the run share names"
    assert {name: getattr(run, name) for name in same} == {name: getattr(CHANGED, name) for name in same}
    # each changed from its default (but the executor: ray refuses num_gpu, so it stays local)
    assert {name for name in same if getattr(run, name) == getattr(defaults, name)} == {"executor"}
    assert (run.sampling.temperature, run.sampling.top_p, run.sampling.max_tokens, run.sampling.seed) == (
        0.2,
        0.9,
        99,
        7,
    )
    assert (run.engine.engine, run.engine.model, run.engine.device, run.engine.max_model_len) == (
        "openai",
        "served",
        "cpu",
        2048,
    )
    assert (run.engine.max_images_per_prompt, run.engine.options) == (3, {"timeout": 5})
    assert (run.plan.max_resolution, run.plan.num_frames, run.plan.frame_sampling) == (320, 3, "uniform")
    assert (run.plan.max_tokens, run.plan.max_model_len, run.force) == (99, 2048, True)


def test_a_run_field_that_carries_a_setting_is_the_setting_as_declared() -> None:
    worked_out = {"engine", "clips_dir", "encoder_limit"}  # run_options derives these
    carried = set(RunOptions.model_fields) & set(UpsampleSettings.model_fields) - worked_out
    assert {"batch_size", "on_error", "workers", "num_gpu", "executor", "encoder_tokenizer"} <= carried
    assert carried == set(RunSettings.model_fields), "declared once, in settings.RunSettings"
    for name in carried:
        run, setting = RunOptions.model_fields[name], UpsampleSettings.model_fields[name]
        assert (run.annotation, run.default, run.metadata, run.description) == (
            setting.annotation,
            setting.default,
            setting.metadata,
            setting.description,
        ), name
