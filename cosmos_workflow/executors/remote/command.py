"""The command the host runs: ``upsample-prompts`` with this run's options, in the image or the venv.

Every option of the run becomes a flag (or, for the two without one, a ``COSMOS_*`` variable of
:mod:`cosmos_workflow.config`), so the host runs exactly this run's settings whatever its own
config says. Docker mode runs ``scripts/upsample_prompt.sh`` as shipped with the wheel, with
``DOCKER=1``: the image, the shipped code mounted read-only, the uploads and the job folder
mounted at their own paths, ``--gpus`` only when the host has a GPU, torchrun across ``gpus``.
Venv mode runs the interpreter directly (``torch.distributed.run`` across ``gpus``).
Everything is an argument list: names, prompts and paths are data, never shell syntax.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cosmos_workflow.config import RunOptions, env_name
from cosmos_workflow.executors.remote.settings import RemoteConfig

SCRIPT = "scripts/upsample_prompt.sh"


@dataclass(frozen=True)
class RemotePaths:
    """Absolute paths on the host for one job."""

    batch: str
    output: str
    clips: str
    code: str  #: the shipped code folder: the wheel and scripts/
    wheel: str
    blobs: str
    job: str
    python: str  #: venv mode: the interpreter, ``~`` expanded


@dataclass(frozen=True)
class RemoteCommand:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def upsample_flags(options: RunOptions, model: str, clips_dir: str | None, *, force: bool) -> list[str]:
    """``upsample-prompts`` flags that reproduce ``options`` (the model as the host names it)."""
    plan, sampling, engine = options.plan, options.sampling, options.engine
    flags = [
        "--preprocess-videos" if plan.preprocess else "--no-preprocess",
        f"--max-resolution={plan.max_resolution}",
        f"--num-frames={plan.num_frames}",
        f"--frame-sampling={plan.frame_sampling}",
        f"--engine={engine.engine}",
        f"--model={model}",
        f"--batch-size={options.batch_size}",
        f"--max-model-len={engine.max_model_len}",
        f"--max-tokens={sampling.max_tokens}",
        f"--temperature={sampling.temperature}",
        f"--top-p={sampling.top_p}",
        f"--on-error={options.on_error}",
        "--quiet",
    ]
    flags += [f"--seed={sampling.seed}"] if sampling.seed is not None else []
    flags += [f"--device={engine.device}"] if engine.device else []
    flags += [f"--engine-option={key}={_scalar(value)}" for key, value in engine.options.items()]
    flags += [f"--clips-dir={clips_dir}"] if clips_dir else ["--no-clips"]
    flags += ["--force"] if force else []
    return flags


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def settings_env(options: RunOptions) -> dict[str, str]:
    """The settings that have no flag, as the host's config reads them from the environment."""
    return {
        env_name("upsample", "workers"): str(options.workers),
        env_name("upsample", "prefetch_batches"): str(options.prefetch_batches),
    }


def remote_command(
    config: RemoteConfig,
    paths: RemotePaths,
    flags: list[str],
    options: RunOptions,
    *,
    gpus: int,
    container: str,
) -> RemoteCommand:
    """The job's command: docker mode through the seed's script, venv mode directly."""
    if config.remote.mode == "docker":
        return _docker_command(config, paths, flags, options, gpus=gpus, container=container)
    python = paths.python
    launch = [python, "-m", "cosmos_workflow"]
    if gpus > 1:
        launch = [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}"]
        launch += ["-m", "cosmos_workflow"]
    argv = [*launch, "upsample-prompts", paths.batch, f"--output-file={paths.output}", *flags]
    return RemoteCommand(argv, settings_env(options))


def _docker_command(
    config: RemoteConfig,
    paths: RemotePaths,
    flags: list[str],
    options: RunOptions,
    *,
    gpus: int,
    container: str,
) -> RemoteCommand:
    inside_wheel = f"/opt/cosmos-workflow/{Path(paths.wheel).name}"  # where the script mounts code/
    docker_args = ["--name", container, "--init"]
    for name, value in settings_env(options).items():
        docker_args += ["-e", f"{name}={value}"]
    env = {
        "DOCKER": "1",
        "IMAGE": config.image,
        "DOCKER_GPUS": "all" if gpus else "none",
        "COSMOS_WORKFLOW_PIP": inside_wheel,
        "MOUNTS": f"{paths.blobs}\n{paths.job}",
        "DOCKER_ARGS": "\n".join(docker_args),
    }
    plan = options.plan
    argv = ["bash", f"{paths.code}/{SCRIPT}", paths.batch, paths.output]
    argv += ["true" if plan.preprocess else "false", str(plan.max_resolution), str(plan.num_frames)]
    argv += [str(max(gpus, 1)), "--", *flags]
    return RemoteCommand(argv, env)
