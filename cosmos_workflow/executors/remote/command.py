"""The command the host runs: ``upsample-prompts`` with this run's options, in the image or the venv.

Every option of the run becomes a flag (or, for the two without one, a ``COSMOS_*`` variable), the
same way a local ``--num-gpu`` launch passes them to its ranks (:mod:`..launcher`), so the host runs
exactly this run's settings whatever its own config says. Docker mode runs
``scripts/upsample_prompt.sh`` as shipped with the wheel, with ``DOCKER=1``: the image, the
shipped code mounted read-only, the uploads and the job folder mounted at their own paths,
``[docker] checkpoint_dir`` (the run's model there) mounted read-only at its own path,
``--gpus`` only when the host has a GPU, torchrun across ``gpus``, and cosmos-workflow run as the
remote user (``CONTAINER_USER``: installed as root, then run with that uid and gid).
Venv mode runs the CLI with the interpreter directly (``--num-gpu``: torchrun across ``gpus``).
Everything is an argument list: names, prompts and paths are data, never shell syntax.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from cosmos_workflow.config import RunOptions
from cosmos_workflow.executors.launcher import child_arguments, child_environment
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


def remote_options(
    options: RunOptions,
    *,
    model: str,
    clips_dir: str | None,
    num_gpu: int,
    encoder_tokenizer: str | None = None,
) -> RunOptions:
    """This run's options as the host runs them: its model path, its clips folder, its GPUs, its
    copy of the encoder tokenizer."""
    return options.model_copy(
        update={
            "engine": options.engine.model_copy(update={"model": model}),
            "clips_dir": PurePosixPath(clips_dir) if clips_dir else None,
            "encoder_tokenizer": PurePosixPath(encoder_tokenizer) if encoder_tokenizer else None,
            "num_gpu": max(num_gpu, 1),
            "cuda_devices": None,
        }
    )


def remote_command(
    config: RemoteConfig,
    paths: RemotePaths,
    options: RunOptions,
    *,
    gpus: int,
    container: str,
    owner: str = "",
) -> RemoteCommand:
    """The job's command for ``options`` as :func:`remote_options` made them: docker mode through
    the seed's script (its NUM_GPU runs torchrun; ``owner``, the remote user's ``UID:GID``, runs
    it in the container as that user), venv mode the CLI (``--num-gpu`` runs torchrun)."""
    if config.remote.mode == "docker":
        return _docker_command(config, paths, options, gpus=gpus, container=container, owner=owner)
    argv = [paths.python, "-m", "cosmos_workflow", "upsample-prompts", f"--output-file={paths.output}"]
    argv += [*child_arguments(options), "--quiet", "--", paths.batch]
    return RemoteCommand(argv, child_environment(options, {}))


def _docker_command(
    config: RemoteConfig, paths: RemotePaths, options: RunOptions, *, gpus: int, container: str, owner: str
) -> RemoteCommand:
    inside_wheel = f"/opt/cosmos-workflow/{Path(paths.wheel).name}"  # where the script mounts code/
    docker_args = ["--name", container, "--init"]
    variables = child_environment(options, {})
    for name in variables:  # by name: docker takes the value from the script's environment, so a
        docker_args += ["-e", name]  # system prompt of several lines stays one (DOCKER_ARGS is lines)
    env = {
        **variables,
        "DOCKER": "1",
        "IMAGE": config.image,
        "DOCKER_GPUS": "all" if gpus else "none",
        "COSMOS_WORKFLOW_PIP": inside_wheel,
        "MOUNTS": f"{paths.blobs}\n{paths.job}",
        "DOCKER_ARGS": "\n".join(docker_args),
        # the files it writes in remote_dir are the remote user's, not root's
        "CONTAINER_USER": owner,
    }
    if config.checkpoint_dir:  # the run's model: the script mounts it read-only at its own path
        env["CHECKPOINT_DIR"] = options.engine.model
    plan = options.plan
    # the script's NUM_GPU starts torchrun; the ranks it starts must not start their own
    flags = child_arguments(options.model_copy(update={"num_gpu": 1}))
    argv = ["bash", f"{paths.code}/{SCRIPT}", paths.batch, paths.output]
    argv += ["true" if plan.preprocess else "false", str(plan.max_resolution), str(plan.num_frames)]
    argv += [str(options.num_gpu), "--", *flags, "--quiet"]
    return RemoteCommand(argv, env)
