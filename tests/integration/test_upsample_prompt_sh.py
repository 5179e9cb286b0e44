"""scripts/upsample_prompt.sh: run for real with the fake engine, and its docker/torchrun lines checked."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "upsample_prompt.sh"
CONTAINER_SRC = "/opt/cosmos-workflow"

#: A stand-in for the docker client: runs the container's command here, with only the variables
#: passed by -e (plus PATH/HOME), and the checkout where the container would mount it.
DOCKER_STUB = f"""#!{sys.executable}
import os, sys
args = sys.argv[1:]
assert args[0] == "run", args
env = {{name: os.environ[name] for name in ("PATH", "HOME", "COSMOS_WORKFLOW_CACHE") if name in os.environ}}
i = 1
while args[i].startswith("-"):
    if args[i] in ("-e", "-v", "--gpus"):
        if args[i] == "-e":
            name, sep, value = args[i + 1].partition("=")
            env[name] = value if sep else os.environ[name]
        i += 2
    else:
        i += 1
command = [part.replace({CONTAINER_SRC!r}, {str(REPO)!r}) for part in args[i + 1 :]]
os.execvpe(command[0], command, env)
"""


def run_script(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = os.environ | {"PYTHON": sys.executable} | env
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=environment, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "prompts.json"
    path.parent.mkdir()
    path.write_text(json.dumps([{"name": f"item{n}", "prompt": f"a boat, take {n}"} for n in range(3)]))
    return path


def test_script_passes_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    checked = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout


@pytest.mark.slow
def test_runs_here_with_the_container_step_off(prompts: Path, tmp_path: Path) -> None:
    output = tmp_path / "results" / "upsampled.json"

    run = run_script(
        str(prompts), str(output), "true", "480", "2", "1", "--", "--no-clips", DOCKER="0", ENGINE="fake"
    )

    assert run.returncode == 0, run.stderr
    records = json.loads(output.read_text())
    assert [r["name"] for r in records] == ["item0", "item1", "item2"]
    assert {r["engine"] for r in records} == {"fake"}


@pytest.mark.slow
def test_docker_mode_reinvokes_the_script_inside_the_container(prompts: Path, tmp_path: Path) -> None:
    stub = tmp_path / "docker"
    stub.write_text(DOCKER_STUB)
    stub.chmod(0o755)
    output = tmp_path / "results" / "upsampled.json"

    run = run_script(
        str(prompts), str(output), "false", "320", "1", "1", DOCKER="1", DOCKER_BIN=str(stub), ENGINE="fake"
    )

    assert run.returncode == 0, run.stderr
    records = json.loads(output.read_text())
    assert {r["engine"] for r in records} == {"fake"}  # ENGINE reached the container through -e


def test_missing_prompts_file_is_named_and_fails(tmp_path: Path) -> None:
    run = run_script(str(tmp_path / "nope.json"), str(tmp_path / "out.json"))
    assert run.returncode == 1
    assert f"prompts file '{tmp_path / 'nope.json'}' not found" in run.stderr


def test_fifo_prompts_file_is_not_a_regular_file_not_missing(tmp_path: Path) -> None:
    fifo = tmp_path / "p.json"
    os.mkfifo(fifo)  # issue 23: named, it exists; read, it would block
    run = run_script(str(fifo), str(tmp_path / "out.json"))
    assert run.returncode == 1
    assert f"prompts file '{fifo}' is not a regular file (a FIFO, device or folder)" in run.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("maybe",), "PREPROCESS_VIDEOS must be true or false, got 'maybe'"),
        (("true", "big"), "MAX_RESOLUTION must be a whole number, got 'big'"),
        (("true", "480", "2", "0"), "NUM_GPU must be at least 1, got '0'"),
    ],
)
def test_bad_arguments_exit_2_with_the_reason(prompts: Path, args: tuple[str, ...], message: str) -> None:
    run = run_script(str(prompts), "out.json", *args)
    assert run.returncode == 2
    assert message in run.stderr


def test_too_few_arguments_print_usage() -> None:
    run = run_script("only-one.json")
    assert run.returncode == 2
    assert "PROMPTS_FILE OUTPUT_FILE [PREPROCESS_VIDEOS]" in run.stderr


def test_missing_checkpoint_dir_is_named(prompts: Path, tmp_path: Path) -> None:
    run = run_script(str(prompts), str(tmp_path / "o.json"), CHECKPOINT_DIR=str(tmp_path / "ckpt"))
    assert run.returncode == 1
    assert "CHECKPOINT_DIR" in run.stderr
    assert "is not a folder" in run.stderr


def dry_run(*args: str, **env: str) -> list[str]:
    run = run_script(*args, DRY_RUN="1", **env)
    assert run.returncode == 0, run.stderr
    return shlex.split(run.stdout)


def test_several_gpus_run_torchrun_one_rank_per_gpu(prompts: Path, tmp_path: Path) -> None:
    argv = dry_run(str(prompts), str(tmp_path / "o.json"), "true", "auto", "2", "4", ENGINE="vllm")
    assert argv[:6] == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=4",
        "-m",
    ]
    assert argv[6:8] == ["cosmos_workflow", "upsample-prompts"]
    assert argv[-2:] == ["--", str(prompts)]
    assert argv[argv.index("--engine") + 1] == "vllm"
    assert argv[argv.index("--max-resolution") + 1] == "auto"


def test_one_gpu_runs_the_cli_directly_with_every_setting(prompts: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "my checkpoint"
    ckpt.mkdir()
    argv = dry_run(
        str(prompts),
        str(tmp_path / "o.json"),
        "false",
        "640",
        "3",
        "--",
        "--seed",
        "7",
        CHECKPOINT_DIR=str(ckpt),
        BATCH_SIZE="16",
        EXTRA_ARGS="--engine-option\nmax_num_seqs=64\n--temperature\n0.2",
    )
    assert argv[:3] == [sys.executable, "-m", "cosmos_workflow"]
    assert argv[3:5] == ["upsample-prompts", f"--output-file={tmp_path / 'o.json'}"]
    assert "--no-preprocess" in argv
    assert argv[argv.index("--num-frames") + 1] == "3"
    assert f"--model={ckpt}" in argv  # one argument despite the space
    assert argv[argv.index("--batch-size") + 1] == "16"
    assert argv[-8:] == [
        *("--engine-option", "max_num_seqs=64", "--temperature", "0.2", "--seed", "7"),
        *("--", str(prompts)),
    ]


def test_docker_command_line(prompts: Path, tmp_path: Path) -> None:
    tmp_path, prompts = tmp_path.resolve(), prompts.resolve()  # the script mounts real paths
    ckpt = tmp_path / "ckpt"
    videos = tmp_path / "videos"
    ckpt.mkdir()
    videos.mkdir()
    output = tmp_path / "results" / "up.json"

    argv = dry_run(
        str(prompts),
        str(output),
        "true",
        "480",
        "2",
        "2",
        "--",
        "--seed",
        "1",
        DOCKER="1",
        IMAGE="my/cosmos:1",
        CHECKPOINT_DIR=str(ckpt),
        MOUNTS=str(videos),
        ENGINE="hf",
        DOCKER_ARGS="--shm-size\n8g",
    )

    image = argv.index("my/cosmos:1")
    head, inner = argv[:image], argv[image + 1 :]
    assert head[:6] == ["docker", "run", "--rm", "--gpus", "all", "--ipc=host"]
    volumes = {head[i + 1] for i, part in enumerate(head) if part == "-v"}
    assert volumes == {
        f"{REPO}:{CONTAINER_SRC}:ro",
        f"{ckpt}:{ckpt}:ro",
        f"{prompts.parent}:{prompts.parent}",
        f"{output.parent}:{output.parent}",
        f"{videos}:{videos}",
    }
    variables = {head[i + 1] for i, part in enumerate(head) if part == "-e"}
    assert {"DOCKER=0", "IN_CONTAINER=1", "ENGINE", f"CHECKPOINT_DIR={ckpt}"} <= variables
    assert head[-2:] == ["--shm-size", "8g"]
    assert inner == [
        "bash",
        f"{CONTAINER_SRC}/scripts/upsample_prompt.sh",
        str(prompts),
        str(output),
        *("true", "480", "2", "2"),
        *("--", "--seed", "1"),
    ]
    assert not output.parent.exists()  # DRY_RUN creates nothing (a real run creates it on the host)


@pytest.mark.slow
def test_two_gpus_run_two_torchrun_ranks_here(prompts: Path, tmp_path: Path) -> None:
    output = tmp_path / "results" / "upsampled.json"

    run = run_script(
        str(prompts), str(output), "true", "480", "2", "2", "--", "--no-clips", DOCKER="0", ENGINE="fake"
    )

    assert run.returncode == 0, run.stderr
    assert [r["name"] for r in json.loads(output.read_text())] == ["item0", "item1", "item2"]
    assert output.with_name("upsampled.json.rank1.journal.jsonl").exists()


def test_docker_without_gpu_leaves_out_the_gpus_flag(prompts: Path, tmp_path: Path) -> None:
    argv = dry_run(str(prompts), str(tmp_path / "o.json"), DOCKER="1", IMAGE="img:1", DOCKER_GPUS="none")
    assert argv[:4] == ["docker", "run", "--rm", "--ipc=host"]
    assert "--gpus" not in argv


# issue 15, case 14


def test_case14_dry_run_creates_nothing(prompts: Path, tmp_path: Path) -> None:
    output = tmp_path / "new" / "deeper" / "up.json"
    for docker in ("0", "1"):
        argv = dry_run(str(prompts), str(output), DOCKER=docker)
        assert str(output) in " ".join(argv)
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_case14_prompts_file_starting_with_dash_is_a_file(prompts: Path, tmp_path: Path) -> None:
    dashed = prompts.with_name("-x.json")
    prompts.rename(dashed)
    run = subprocess.run(
        ["bash", str(SCRIPT), "-x.json", "-out.json", "true", "480", "2", "1", "--", "--no-clips"],
        env=os.environ | {"PYTHON": sys.executable, "ENGINE": "fake", "DOCKER": "0"},
        cwd=dashed.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert [r["name"] for r in json.loads((dashed.parent / "-out.json").read_text())] == [
        "item0",
        "item1",
        "item2",
    ]


def test_case14_docker_refuses_a_path_with_a_colon(prompts: Path, tmp_path: Path) -> None:
    colon = tmp_path / "a:b"
    colon.mkdir()
    moved = colon / "prompts.json"
    prompts.rename(moved)
    run = run_script(str(moved), str(tmp_path / "o.json"), DOCKER="1", DRY_RUN="1")
    assert run.returncode == 2
    assert f"path '{moved.resolve()}' contains ':', which docker -v cannot mount" in run.stderr
    assert run.stdout == ""
    plain = tmp_path / "plain.json"
    plain.write_text("[]")
    run = run_script(str(plain), str(tmp_path / "o.json"), DOCKER="1", DRY_RUN="1", MOUNTS=str(colon))
    assert run.returncode == 2 and f"path '{colon}' contains ':'" in run.stderr


def test_the_remote_docker_command_keeps_a_system_prompt_of_several_lines(
    prompts: Path, tmp_path: Path
) -> None:
    """``--remote`` in docker mode: the run's variables reach the container by name, their values
    in the script's environment, so a system prompt file of several lines stays one variable
    (DOCKER_ARGS is one argument a line: a value there would be cut into arguments)."""
    pytest.importorskip("paramiko")
    from cosmos_workflow.config import RunOptions
    from cosmos_workflow.engines import EngineConfig

    tmp_path, prompts = tmp_path.resolve(), prompts.resolve()
    system = "Describe the video.\n\nOne paragraph, no list."
    options = RunOptions(engine=EngineConfig(engine="fake", model="fake"), plan={"system_prompt": system})
    config = _remote_docker_config(tmp_path)
    command, argv = _remote_docker_dry_run(prompts, config, options)

    head = argv[: argv.index("my/cosmos:1")]
    assert argv[argv.index("my/cosmos:1") + 1 :][:2] == [
        "bash",
        f"{CONTAINER_SRC}/scripts/upsample_prompt.sh",
    ]
    assert "COSMOS_SYSTEM_PROMPT" in {head[i + 1] for i, part in enumerate(head) if part == "-e"}
    assert command.env["COSMOS_SYSTEM_PROMPT"] == system  # docker takes it from there, whole


def test_the_remote_docker_command_mounts_the_checkpoint_dir_read_only(prompts: Path, tmp_path: Path) -> None:
    """``--remote`` in docker mode with ``[docker] checkpoint_dir``: the run's model there is
    mounted read-only at its own path, so the container reads its config.json (its family)."""
    pytest.importorskip("paramiko")
    from cosmos_workflow.config import RunOptions
    from cosmos_workflow.engines import EngineConfig

    tmp_path, prompts = tmp_path.resolve(), prompts.resolve()
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    options = RunOptions(engine=EngineConfig(engine="fake", model=str(checkpoint)))
    config = _remote_docker_config(tmp_path, checkpoint_dir=str(checkpoint))
    _, argv = _remote_docker_dry_run(prompts, config, options)

    head = argv[: argv.index("my/cosmos:1")]
    assert f"{checkpoint}:{checkpoint}:ro" in head
    assert f"CHECKPOINT_DIR={checkpoint}" in head


def _remote_docker_config(remote_dir: Path, **docker: str) -> Any:
    """A docker-mode ``RemoteConfig`` (image ``my/cosmos:1``) with ``docker``'s extra settings."""
    from cosmos_workflow.executors.remote import RemoteConfig

    return RemoteConfig.model_validate(
        {
            "remote": {"host": "gpu", "user": "me", "mode": "docker"},
            "remote_dir": str(remote_dir),
            "image": "my/cosmos:1",
            **docker,
        }
    )


def _remote_docker_dry_run(prompts: Path, config: Any, options: Any) -> tuple[Any, list[str]]:
    """The ``--remote`` docker command for ``prompts``, run with DRY_RUN=1: the command and the
    argv the script would have run."""
    from cosmos_workflow.executors.remote.command import RemotePaths, remote_command

    folder = str(prompts.parent)
    paths = RemotePaths(
        batch=str(prompts), output=f"{folder}/out/results.json", clips=f"{folder}/clips", code=str(REPO),
        wheel=f"{folder}/cosmos_workflow.whl", blobs=folder, job=folder, python=sys.executable,
    )  # fmt: skip
    command = remote_command(config, paths, options, gpus=0, container="cosmos-workflow-test")
    run = subprocess.run(
        command.argv, env=os.environ | command.env | {"DRY_RUN": "1"}, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    return command, shlex.split(run.stdout)
