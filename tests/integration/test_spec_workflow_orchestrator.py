"""WorkflowOrchestrator.upsample_prompts_batch: the seed's signature over the executor seam."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from cosmos_workflow.config import options_from_keywords
from cosmos_workflow.engines.fake import FakeEngine
from cosmos_workflow.errors import ConfigError
from cosmos_workflow.executors import LocalExecutor, RunContext
from cosmos_workflow.runner import Job
from cosmos_workflow.specs.prompt_spec import new_spec
from cosmos_workflow.workflow import WorkflowOrchestrator
from tests.videos import make_video


def test_batch_in_order_with_options_and_failures(tmp_path: Path) -> None:
    video = make_video(tmp_path / "v.mp4", 640, 360)
    depth = make_video(tmp_path / "d.mp4", 320, 180)
    specs = [
        new_spec("plain", "A city", input_video_path=str(video)),
        new_spec("blank", "  ", input_video_path=str(video)),
        new_spec("depth", "A road", input_video_path=str(video), control_inputs={"depth": str(depth)}),
    ]
    engine = FakeEngine()
    orchestrator = WorkflowOrchestrator(work_dir=tmp_path / "work", engine=engine)
    out = orchestrator.upsample_prompts_batch(
        specs, max_resolution=160, num_frames=1, temperature=0.0, seed=3, model="tiny-random", engine="fake"
    )
    assert [s.name for s in out] == ["plain", "blank", "depth"]
    assert out[1] == specs[1] and orchestrator.failures == {
        specs[1].id: "prompt is empty; write a short prompt for this item"
    }
    for spec, original in ((out[0], specs[0]), (out[2], specs[2])):
        params = spec.upsampling_params
        assert spec.prompt == original.prompt and spec.upsampled_prompt and params
        assert params.frames == 1 and params.width == 160 and params.max_resolution == 160
        assert params.sampling["temperature"] == 0.0 and params.sampling["seed"] == 3
        assert params.preprocessed_video and Path(params.preprocessed_video).is_file()
    assert out[2].upsampling_params and out[2].upsampling_params.video_path == str(depth)
    assert [r.prompt for r in engine.received] == ["A city", "A road"]

    again = FakeEngine()
    rerun = WorkflowOrchestrator(work_dir=tmp_path / "work", engine=again).upsample_prompts_batch(
        specs, max_resolution=160, num_frames=1, temperature=0.0, seed=3, model="tiny-random", engine="fake"
    )
    assert again.received == []  # resumed from the journal in work_dir
    assert [s.upsampled_prompt for s in rerun] == [s.upsampled_prompt for s in out]


class RecordingExecutor(LocalExecutor):
    """A stand-in for a remote executor: sees the planned jobs, runs them here."""

    def __init__(self) -> None:
        super().__init__(FakeEngine())
        self.seen: list[list[Job]] = []

    def execute(self, jobs: Sequence[Job], run: RunContext) -> None:
        self.seen.append(list(jobs))
        super().execute(jobs, run)


def test_executor_seam_receives_the_planned_jobs(tmp_path: Path) -> None:
    executor = RecordingExecutor()
    spec = new_spec("s", "A city", input_video_path=str(tmp_path / "missing.mp4"))
    [out] = WorkflowOrchestrator(work_dir=tmp_path, executor=executor).upsample_prompts_batch(
        [spec], engine="fake"
    )
    [[job]] = executor.seen
    assert (job.item.name, job.item.video_path) == (spec.id, tmp_path / "missing.mp4")
    assert job.plan.status == "text_only" and "not found" in job.plan.message
    assert out.upsampling_params and out.upsampling_params.status == "text_only"


def test_bad_options_are_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'colour' in \[upsample\]; known keys: batch_size, .*preprocess_videos",
    ):
        options_from_keywords(colour="red")
    with pytest.raises(ConfigError, match="not both"):
        WorkflowOrchestrator(executor=LocalExecutor(), engine=FakeEngine())
    with pytest.raises(ConfigError, match="no model given"):
        WorkflowOrchestrator(work_dir=tmp_path).upsample_prompts_batch([new_spec("s", "A city")])
    options = options_from_keywords(
        preprocess_videos=False, max_resolution="auto", checkpoint_dir="/ckpt", max_tokens=64
    )
    assert options.plan.preprocess is False and options.plan.max_resolution == "auto"
    assert options.engine.model == "/ckpt" and options.plan.max_tokens == options.sampling.max_tokens == 64
