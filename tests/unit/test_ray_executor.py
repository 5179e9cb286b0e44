"""The Ray executor's decisions that need no cluster: placement, batches, errors, settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from cosmos_workflow.config import RunOptions, resolve_settings, run_options
from cosmos_workflow.engines import EngineConfig
from cosmos_workflow.errors import ConfigError, ModelLoadError, UsageError
from cosmos_workflow.executors.ray import (
    AUTO_BATCH,
    RayExecutor,
    engine_batches,
    forwarded_environment,
    our_error,
    placement,
)
from cosmos_workflow.planner import Plan
from cosmos_workflow.runner import Job
from cosmos_workflow.specs.batch import BatchItem
from tests.jobs import video_job


def options(engine: str = "hf", **update: object) -> RunOptions:
    return RunOptions(engine=EngineConfig(engine=engine, model="tiny-random")).model_copy(update=update)


def job(name: str, tokens: int, *, fits: bool = True) -> Job:
    plan = Plan(
        name=name,
        max_tokens=300,
        total_tokens=tokens,
        max_model_len=4096,
        fits=fits,
        status="ok" if fits else "overflow",
    )
    return Job(item=BatchItem(name=name, prompt=f"prompt {name}"), key=f"key-{name}", plan=plan)


def test_one_gpu_actor_per_gpu_by_default() -> None:
    where = placement({"GPU": 2, "CPU": 32}, options())

    assert (where.actors, where.gpus, where.cpus, where.task_cpus) == (2, 1.0, 1.0, 0.5)


def test_more_actors_than_gpus_is_a_usage_error_naming_the_fix() -> None:
    with pytest.raises(
        UsageError, match=r"--ray-actors 3 needs 3 GPUs but the Ray cluster has 2; pass --ray-actors 2"
    ):
        placement({"GPU": 2, "CPU": 32}, options(ray_actors=3))


@pytest.mark.parametrize(
    ("engine", "device"), [("fake", None), ("hf", "cpu")], ids=["fake engine", "hf on the cpu"]
)
def test_cpu_actors_on_a_gpu_cluster_when_the_engine_needs_no_gpu(engine: str, device: str | None) -> None:
    run = options(engine, ray_actors=2)
    run = run.model_copy(update={"engine": run.engine.model_copy(update={"device": device})})

    where = placement({"GPU": 4, "CPU": 8}, run)

    assert (where.actors, where.gpus) == (2, 0.0)


def test_cpu_shares_leave_room_for_preprocessing() -> None:
    where = placement({"CPU": 2}, options(ray_actors=2))

    assert (where.actors, where.gpus, where.cpus) == (2, 0.0, 0.66)
    assert where.actors * where.cpus + where.task_cpus <= 2  # nothing waits for a CPU forever
    assert where.task_cpus != where.cpus  # so Ray Data keeps preprocessing out of the actors
    assert placement({"CPU": 2}, options()).actors == 1  # default without GPUs


def test_too_many_actors_for_the_cpus_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="pass a smaller --ray-actors"):
        placement({"CPU": 2}, options(ray_actors=200))


def test_engine_batches_are_the_local_runs_then_the_unfit_ones() -> None:
    jobs = [
        job("a", 50),
        job("b", 10),
        job("c", 30),
        job("big", 9999, fits=False),
        job("d", 20),
        job("e", 40),
    ]

    batches = engine_batches(jobs, options(batch_size=2))

    assert [[j.item.name for j in batch] for batch in batches] == [["b", "d"], ["c", "e"], ["a"], ["big"]]


def test_a_first_batch_goes_first_as_in_a_local_run() -> None:
    jobs = [job("a", 50), job("b", 10), job("c", 30), job("d", 20), job("e", 40)]

    batches = engine_batches(jobs, options(batch_size=2, first_batch=1))

    assert [[j.item.name for j in batch] for batch in batches] == [["b"], ["d", "c"], ["e", "a"]]
    auto = [job(str(n), n) for n in range(AUTO_BATCH + 1)]
    assert [len(b) for b in engine_batches(auto, options(batch_size="auto", first_batch=16))] == [16, 241]


@pytest.mark.parametrize(
    ("engine_options", "together"),
    [
        ({"share_prefix": "decode", "static_cache": True}, True),
        ({"share_prefix": True, "static_cache": True}, True),
        ({}, False),  # off by default: by length alone
        ({"share_prefix": "decode", "decode_attention": "sdpa"}, False),  # refused by the engine's load
    ],
)
def test_an_engine_that_shares_frames_gets_each_videos_requests_in_one_ray_batch(
    engine_options: dict[str, object], together: bool
) -> None:
    jobs = [
        video_job("x1", "x", 1030),
        video_job("y1", "y", 1020),
        video_job("x2", "x", 1050),
        video_job("y2", "y", 1060),
    ]
    run = options(batch_size=2)
    run = run.model_copy(update={"engine": run.engine.model_copy(update={"options": engine_options})})

    batches = [[j.item.name for j in batch] for batch in engine_batches(jobs, run)]

    assert batches == ([["x1", "x2"], ["y1", "y2"]] if together else [["y1", "x1"], ["x2", "y2"]])


def test_auto_batch_size_ships_large_batches_for_each_actor_to_split() -> None:
    jobs = [job(str(n), n) for n in range(AUTO_BATCH + 1)]

    assert [len(b) for b in engine_batches(jobs, options(batch_size="auto"))] == [AUTO_BATCH, 1]


def test_auto_batch_size_leaves_no_actor_idle_on_a_small_run() -> None:
    """'auto' is the default batch size: 200 requests on 2 actors go as 2 batches of 100, not one
    of 200 that leaves an actor idle; 3 requests on 4 actors, one each."""
    two_hundred = [job(str(n), n) for n in range(200)]
    assert [len(b) for b in engine_batches(two_hundred, options(batch_size="auto"), actors=2)] == [100, 100]
    assert [len(b) for b in engine_batches(two_hundred[:3], options(), actors=4)] == [1, 1, 1]
    many = [job(str(n), n) for n in range(3 * AUTO_BATCH)]
    assert [len(b) for b in engine_batches(many, options(), actors=2)] == [AUTO_BATCH] * 3


def test_our_error_is_found_inside_rays_wrappers() -> None:
    class Wrapper(Exception):
        def __init__(self, cause: BaseException) -> None:
            super().__init__("ray::MapWorker failed")
            self.cause = cause

    original = ModelLoadError("checkpoint folder /x does not exist")
    try:
        raise RuntimeError("streaming executor stopped") from Wrapper(original)
    except RuntimeError as exc:
        assert our_error(exc) is original
    assert our_error(ValueError("not ours")) is None


def test_only_cosmos_workflow_variables_reach_the_workers() -> None:
    env = {"COSMOS_WORKFLOW_CACHE": "/cache", "HOME": "/root", "COSMOS_MAX_TOKENS": "10"}

    assert forwarded_environment(env) == {"COSMOS_WORKFLOW_CACHE": "/cache"}


def test_the_openai_engine_is_refused_with_one_line() -> None:
    with pytest.raises(UsageError, match="does not take --engine openai: the server already batches"):
        RayExecutor().adapt(options("openai"))
    with pytest.raises(UsageError, match="does not take --engine openai"):
        RunOptions(engine=EngineConfig(engine="openai", model="served"), executor="ray")
    assert RayExecutor().adapt(options("vllm")).engine.engine == "vllm"


@pytest.mark.parametrize("gpus", [{"num_gpu": 2}, {"cuda_devices": "0,1"}], ids=["num_gpu", "cuda_devices"])
def test_torchrun_gpu_settings_are_refused_on_ray(gpus: dict[str, object]) -> None:
    with pytest.raises(
        UsageError, match="the cluster gives each actor its GPU: drop them and pass --ray-actors"
    ):
        RunOptions(engine=EngineConfig(engine="hf", model="tiny-random"), executor="ray", **gpus)


def test_ray_settings_come_from_the_file_the_environment_and_flags(tmp_path: Path) -> None:
    config = tmp_path / "cosmos-workflow.toml"
    config.write_text('[upsample]\nexecutor = "ray"\nray_address = "head:6379"\nray_actors = 4\n')

    resolved = resolve_settings(config_file=config, env={"COSMOS_RAY_ACTORS": "8"}, flags={"upsample": {}})
    run = run_options(resolved.settings.upsample.model_copy(update={"model": "tiny-random"}))

    assert (run.executor, run.ray_address, run.ray_actors) == ("ray", "head:6379", 8)
    assert resolved.sources["upsample.ray_actors"] == "env COSMOS_RAY_ACTORS"
    flagged = resolve_settings(config_file=config, env={}, flags={"upsample": {"executor": "local"}})
    assert flagged.settings.upsample.executor == "local"


def test_an_unknown_executor_names_the_key_and_the_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[upsample]\nexecutor = "slurm"\n')

    with pytest.raises(ConfigError, match=r"\[upsample\] executor = 'slurm' \(file .*c.toml\)"):
        resolve_settings(config_file=config, env={})
