"""``upsample-prompts --remote`` for real: the loopback sshd as the GPU host, its test user's venv
(the tiny model really runs there) or Docker with the local test image (a real container)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cosmos_workflow.executors.remote.executor import container_name
from tests.sshd import Sshd
from tests.videos import make_video

ROOT = Path(__file__).resolve().parents[2]
HOSTILE_NAMES = ["a b", 'it\'s "quoted"', "$(touch pwned)", "x; touch pwned", "back`tick`"]

Config = Callable[..., Path]


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cosmos_workflow", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )


def start_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cosmos_workflow", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


@pytest.fixture
def remote_toml(sshd: Sshd, tmp_path: Path, remote_python: str) -> Iterator[Config]:
    """Writes a config file for the test sshd; each test gets its own remote_dir (removed after)."""
    made: list[Path] = []

    def write(mode: str = "venv", folder: str = "run", checkpoint: Path | None = None, **docker: str) -> Path:
        """``checkpoint``: a local checkpoint folder, copied beside remote_dir for the test user;
        ``[docker] checkpoint_dir`` names the copy."""
        remote_dir = f"~/tests/{uuid.uuid4().hex[:10]}/{folder}"
        made.append(Path(sshd.home) / remote_dir[2:].split("/")[0] / remote_dir[2:].split("/")[1])
        if checkpoint is not None:
            docker["checkpoint_dir"] = str(give_to_test_user(checkpoint, made[-1] / "checkpoint", sshd))
        path = tmp_path / f"cosmos-{len(made)}.toml"
        extra = "".join(f'{key} = "{value}"\n' for key, value in docker.items())
        path.write_text(
            f"""[remote]
host = "{sshd.host}"
port = {sshd.port}
user = "{sshd.user}"
ssh_key = "{sshd.client_key}"
known_hosts = "{sshd.known_hosts}"
mode = "{mode}"
python = "{remote_python}"

[paths]
remote_dir = {json.dumps(remote_dir)}

[docker]
{extra}"""
        )
        return path

    yield write
    for folder in made:  # written by the test user and, in docker mode, by root in the container
        shutil.rmtree(folder, ignore_errors=True)


def give_to_test_user(source: Path, target: Path, sshd: Sshd) -> Path:
    """A copy of ``source`` at ``target`` in the test user's home, owned by that user (this
    process is root; its own files are not readable there)."""
    shutil.copytree(source, target)  # missing folders above it are made too, as root
    made_here = [p for p in target.parents if p.is_relative_to(sshd.home) and p != Path(sshd.home)]
    for path in [*made_here, target, *target.rglob("*")]:
        shutil.chown(path, sshd.user, sshd.user)
    return target


def remote_dir_of(config: Path, sshd: Sshd) -> Path:
    """The remote_dir of a config, as a path on this machine (the host is this machine)."""
    line = next(line for line in config.read_text().splitlines() if line.startswith("remote_dir"))
    return Path(sshd.home) / json.loads(line.split("=", 1)[1])[2:]


def job_dir(config: Path, sshd: Sshd) -> Path:
    [job] = list((remote_dir_of(config, sshd) / "jobs").iterdir())
    return job


def prompts(folder: Path, names: list[str], *, with_videos: bool = True) -> Path:
    """A prompts file; each item has its own small video (in a folder with a hostile name)."""
    videos = folder / "vids 'q' $(x);"
    videos.mkdir(parents=True)
    items = []
    for n, name in enumerate(names):
        item: dict[str, object] = {"name": name, "prompt": f"a red car turns left, take {n} {name}"}
        if with_videos:
            video = videos / f"clip {n} '$(touch pwned)'.mp4"
            make_video(video, 96 + 16 * n, 64, frames=4)
            item["video_path"] = str(video)
        items.append(item)
    path = folder / "prompts.json"
    path.write_text(json.dumps(items))
    return path


def records(output: Path) -> list[dict[str, object]]:
    data: list[dict[str, object]] = json.loads(output.read_text())
    return data


def journal_lines(output: Path) -> int:
    journal = output.with_name(output.name + ".journal.jsonl")
    return len(journal.read_text().splitlines()) if journal.exists() else 0


def wait(
    condition: Callable[[], bool],
    what: str,
    timeout: float = 240,
    process: subprocess.Popen[str] | None = None,
) -> None:
    """Until ``condition``; with the CLI's ``process``, a process that ended first or one still
    running at the deadline fails the test with its stderr (and is not left running)."""
    deadline = time.monotonic() + timeout
    while not condition():
        ended = process is not None and process.poll() is not None
        if ended or time.monotonic() >= deadline:
            stderr = ""
            if process is not None:
                process.kill()
                stderr = process.communicate()[1][-3000:]
            raise AssertionError(f"{'the CLI ended' if ended else 'timed out'} waiting for {what}: {stderr}")
        time.sleep(0.2)


def running_in_session(sid: int) -> list[str]:
    """The live (not zombie) processes of the job's session on the host (this machine)."""
    listing = subprocess.run(["ps", "-e", "-o", "sid=,stat=,args="], capture_output=True, text=True).stdout
    return [
        line
        for line in listing.splitlines()
        if line.split()[0] == str(sid) and not line.split()[1].startswith("Z")
    ]


FAKE = ["--engine", "fake", "--model", "fake"]


def slow_fake(seconds: float = 1.0) -> list[str]:
    return [*FAKE, "--batch-size", "1", "--engine-option", f"seconds_per_batch={seconds}"]


def slow_remote_run(config: Path, tmp_path: Path, count: int) -> tuple[list[str], Path]:
    """The arguments of a remote run of ``count`` text-only items, slow enough to interrupt, and
    its output file."""
    source = prompts(tmp_path, [f"item{n}" for n in range(count)], with_videos=False)
    output = tmp_path / "up.json"
    args = ["upsample-prompts", str(source), "-o", str(output), *slow_fake(), "--config", str(config)]
    return [*args, "--remote"], output


@pytest.mark.slow
def test_venv_mode_runs_the_tiny_model_on_the_host(
    remote_toml: Config, examples: Path, tmp_path: Path
) -> None:
    config = remote_toml("venv")
    output = tmp_path / "out" / "up.json"
    tiny = ["--model", "tiny-random", "--engine", "hf", "--config", str(config)]
    run = cli("upsample-prompts", str(examples), "-o", str(output), *tiny, "--remote")
    assert run.returncode == 0, run.stderr
    assert "started the job on 127.0.0.1" in run.stderr
    got = records(output)
    assert [r["status"] for r in got] == ["ok", "ok", "ok", "text_only"]
    for record in got[:3]:
        assert Path(str(record["video_path"])).is_file()  # the local video, not the host's copy
        assert str(record["preprocessed_video"]).startswith(str(tmp_path / "out" / "up_clips"))
        assert Path(str(record["preprocessed_video"])).is_file()
        assert record["model"] == "tiny-random" and record["frames"] == 2
    # the keys are this machine's: a local run of the same command finds every item done
    local = cli("upsample-prompts", str(examples), "-o", str(output), *tiny)
    assert local.returncode == 0 and "4 items (4 already done)" in local.stderr
    again = cli("upsample-prompts", str(examples), "-o", str(output), *tiny, "--remote")
    assert again.returncode == 0 and "4 items (4 already done)" in again.stderr
    assert "started the job" not in again.stderr


@pytest.mark.slow
def test_spec_folder_upsampled_on_the_host_with_the_tiny_model(
    remote_toml: Config, tmp_path: Path, small_video: Path
) -> None:
    config = remote_toml("venv")
    specs = tmp_path / "specs"
    for name in ("shot one", "shot 'two' $(x)"):
        made = cli(
            "create-spec",
            name,
            f"a boat on a lake, {name}",
            "--video",
            str(small_video),
            "--specs-dir",
            str(specs),
        )
        assert made.returncode == 0, made.stderr
    tiny = ["--model", "tiny-random", "--engine", "hf", "--config", str(config)]
    run = cli("upsample-prompts", "--input-dir", str(specs), *tiny, "--remote")
    assert run.returncode == 0, run.stderr
    assert "2 updated" in run.stderr
    files = sorted(specs.rglob("*.json"))
    written = [json.loads(f.read_text()) for f in files if ".upsampling" not in f.parts]
    assert len(written) == 2
    for spec in written:
        assert spec["upsampled_prompt"] and spec["upsampling_params"]["model"] == "tiny-random"
        assert spec["upsampling_params"]["video_path"] == str(small_video)


@pytest.mark.slow
def test_venv_mode_runs_a_qwen_checkpoint_with_the_refiner_preset(
    remote_toml: Config, tmp_path: Path, cache_dir: Path
) -> None:
    """A Reason1-style checkpoint (the tiny Qwen2.5-VL) on the host: ``--model`` names this
    machine's copy, ``[docker] checkpoint_dir`` the host's. The host takes the family from its
    config.json and plans as this machine does; the system prompt file, which the host cannot
    read, reaches it as text."""
    from cosmos_workflow.engines.tiny_qwen import tiny_qwen_dir

    qwen = tiny_qwen_dir(cache_dir)
    config = remote_toml("venv", checkpoint=qwen)
    source = prompts(tmp_path, ["one", "two"])
    system = tmp_path / "system.txt"
    system.write_text("Describe the video in one sentence.", encoding="utf-8")
    output = tmp_path / "out" / "up.json"
    refiner = ["--model", str(qwen), "--preset", "predict2-refiner", "--system-prompt-file", str(system)]
    args = [*refiner, "--engine", "hf", "--max-tokens", "120", "--config", str(config)]

    run = cli("upsample-prompts", str(source), "-o", str(output), *args, "--remote")

    assert run.returncode == 0, run.stderr
    assert "started the job on 127.0.0.1" in run.stderr
    plan = cli("plan", str(source), *refiner, "--json")
    assert plan.returncode == 0, plan.stderr
    planned = {row["name"]: row for row in json.loads(plan.stdout)}
    for record in records(output):
        assert record["status"] == "ok" and str(record["upsampled_prompt"]).isascii()
        row = planned[str(record["name"])]  # the host's plan is this machine's, in Qwen's arithmetic
        assert (record["width"], record["height"], record["frames"]) == (row["width"], row["height"], 2)
        assert record["prompt_tokens"] == row["total_tokens"] and row["width"] % 28 == 0
    local = cli("upsample-prompts", str(source), "-o", str(output), *args)
    assert local.returncode == 0 and "2 items (2 already done)" in local.stderr


def test_a_host_checkpoint_of_another_family_is_refused_before_the_job_starts(
    remote_toml: Config, tmp_path: Path, cache_dir: Path, sshd: Sshd
) -> None:
    """A Qwen2.5-VL checkpoint here, a Mistral-format (Pixtral) folder on the host: the host's
    params.json, read over SFTP, names its family, and the run stops in one line before any
    upload or job (else found out at the first record, after the host loaded a model)."""
    from cosmos_workflow.engines.tiny_qwen import tiny_qwen_dir

    qwen = tiny_qwen_dir(cache_dir)
    pixtral = tmp_path / "pixtral"
    pixtral.mkdir()
    (pixtral / "params.json").write_text("{}")
    config = remote_toml("venv", checkpoint=pixtral)
    source = prompts(tmp_path, ["one", "two"])
    output = tmp_path / "up.json"
    args = ["--model", str(qwen), "--engine", "fake", "--config", str(config)]

    run = cli("upsample-prompts", str(source), "-o", str(output), *args, "--remote")

    assert run.returncode == 1, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert "is Pixtral, but --model" in last and "here is Qwen2.5-VL / Cosmos-Reason1" in last, run.stderr
    assert "set [docker] checkpoint_dir" in last
    assert "started the job" not in run.stderr
    remote = remote_dir_of(config, sshd)
    assert not (remote / "jobs").exists() and not (remote / "blobs").exists()


def test_the_encoder_tokenizer_is_sent_and_counts_the_answers_on_the_host(
    remote_toml: Config, tmp_path: Path, sshd: Sshd
) -> None:
    """--encoder-tokenizer with --remote: its tokenizer.json goes to the host by content (private
    to the remote user), the host counts and shortens the answers with it as a local run does."""
    from tests.integration.test_encoder_limit import write_encoder_tokenizer

    config = remote_toml("venv")
    source = prompts(tmp_path, ["one", "two"], with_videos=False)
    encoder = write_encoder_tokenizer(tmp_path / "t5")
    args = [
        "--engine-option",
        "answer_words=100",
        "--encoder-tokenizer",
        str(encoder),
        "--encoder-limit",
        "60",
    ]
    there, here = tmp_path / "there.json", tmp_path / "here.json"

    run = cli(
        "upsample-prompts", str(source), "-o", str(there), *FAKE, *args, "--config", str(config), "--remote"
    )
    local = cli("upsample-prompts", str(source), "-o", str(here), *FAKE, *args)

    assert run.returncode == 0, run.stderr
    assert local.returncode == 0, local.stderr
    for record in records(there):
        assert record["attempts"] == 2 and 0 < int(str(record["encoder_tokens"])) <= 60
    fields = ("key", "upsampled_prompt", "encoder_tokens", "attempts", "retry")
    assert [[r[f] for f in fields] for r in records(there)] == [[r[f] for f in fields] for r in records(here)]
    [blob] = (remote_dir_of(config, sshd) / "blobs").glob("*.json")
    assert blob.read_bytes() == (encoder / "tokenizer.json").read_bytes()
    assert blob.stat().st_mode & 0o777 == 0o600
    tight = [*FAKE, *args[:-1], "1", "--config", str(config), "--remote"]  # no answer fits: each fails
    failed = cli("upsample-prompts", str(source), "-o", str(tmp_path / "failed.json"), *tight)
    assert failed.returncode == 3, failed.stderr
    for record in records(tmp_path / "failed.json"):  # the tokenizer as given here, not the host's copy
        assert f"text encoder ({encoder}), over its limit of 1" in str(record["error"])


def test_docker_mode_runs_a_real_container(
    remote_toml: Config, tmp_path: Path, docker_image: str, sshd: Sshd
) -> None:
    config = remote_toml("docker", image=docker_image)
    source = prompts(tmp_path, ["one", "two"])
    output = tmp_path / "out.json"
    run = cli("upsample-prompts", str(source), "-o", str(output), *FAKE, "--config", str(config), "--remote")
    assert run.returncode == 0, run.stderr
    assert [r["status"] for r in records(output)] == ["ok", "ok"]
    assert all(Path(str(r["preprocessed_video"])).is_file() for r in records(output))
    job = job_dir(config, sshd)
    log = (job / "job.log").read_text()
    assert "installing cosmos-workflow from /opt/cosmos-workflow/cosmos_workflow-" in log
    # this job's own container (other tests' containers may be running beside it under xdist)
    container = container_name(job.name)
    leftover = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"name=^{container}$", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert leftover.stdout.strip() == ""  # --rm: the container is gone


def test_docker_mode_runs_a_qwen_checkpoint_from_checkpoint_dir(
    remote_toml: Config, tmp_path: Path, cache_dir: Path, docker_image: str, sshd: Sshd
) -> None:
    """A Reason1-style checkpoint (the tiny Qwen2.5-VL) in a container: ``--model`` names this
    machine's copy, ``[docker] checkpoint_dir`` the host's, mounted read-only at its own path. The
    container takes the family from its config.json and plans as this machine does (the test image
    has no torch: the fake engine answers, the Qwen family plans)."""
    from cosmos_workflow.engines.tiny_qwen import tiny_qwen_dir

    qwen = tiny_qwen_dir(cache_dir)
    config = remote_toml("docker", checkpoint=qwen, image=docker_image)
    source = prompts(tmp_path, ["one", "two"])
    output = tmp_path / "out" / "up.json"
    refiner = ["--model", str(qwen), "--preset", "predict2-refiner"]
    args = [*refiner, "--engine", "fake", "--config", str(config)]

    run = cli("upsample-prompts", str(source), "-o", str(output), *args, "--remote")

    assert run.returncode == 0, run.stderr
    assert "started the job on 127.0.0.1" in run.stderr
    plan = cli("plan", str(source), *refiner, "--json")
    assert plan.returncode == 0, plan.stderr
    planned = {row["name"]: row for row in json.loads(plan.stdout)}
    host_copy = remote_dir_of(config, sshd).parent / "checkpoint"  # what the container ran
    got = records(output)
    assert sorted(str(r["name"]) for r in got) == ["one", "two"]
    for record in got:
        assert record["status"] == "ok" and record["model"] == str(host_copy)
        row = planned[str(record["name"])]  # the container's plan is this machine's, in Qwen's arithmetic
        assert [record[k] for k in ("width", "height", "frames")] == [
            row[k] for k in ("width", "height", "frames")
        ]
        assert record["prompt_tokens"] == row["total_tokens"] and row["width"] % 28 == 0
    again = cli("upsample-prompts", str(source), "-o", str(output), *args, "--remote")
    assert again.returncode == 0 and "2 items (2 already done)" in again.stderr, again.stderr
    assert "started the job" not in again.stderr


def test_docker_mode_runs_text_only_items(remote_toml: Config, tmp_path: Path, docker_image: str) -> None:
    """No video sent: the uploads folder the container mounts exists all the same."""
    config = remote_toml("docker", image=docker_image)
    source = prompts(tmp_path, ["one", "two"], with_videos=False)
    output = tmp_path / "out.json"
    run = cli("upsample-prompts", str(source), "-o", str(output), *FAKE, "--config", str(config), "--remote")
    assert run.returncode == 0, run.stderr
    assert [r["status"] for r in records(output)] == ["text_only", "text_only"]


def test_hostile_names_and_paths_pass_through_untouched(
    remote_toml: Config, tmp_path: Path, sshd: Sshd
) -> None:
    config = remote_toml("venv", folder="dir with space 'q' $(touch pwned); x")
    source = prompts(tmp_path, HOSTILE_NAMES)
    output = tmp_path / "out 'q' $(x);" / "up.json"
    run = cli("upsample-prompts", str(source), "-o", str(output), *FAKE, "--config", str(config), "--remote")
    assert run.returncode == 0, run.stderr
    got = records(output)
    assert [r["name"] for r in got] == HOSTILE_NAMES
    for record, item in zip(got, json.loads(source.read_text()), strict=True):
        assert record["original_prompt"] == item["prompt"]
        # the fake engine echoes the prompt (the answer's cleaning drops markdown backticks)
        assert item["prompt"].replace("`", "") in str(record["upsampled_prompt"])
        assert record["video_path"] == item["video_path"]
    found = subprocess.run(["find", sshd.home, str(ROOT), "-name", "pwned"], capture_output=True, text=True)
    assert found.stdout == ""
    rerun = cli(
        "upsample-prompts",
        str(source),
        "-o",
        str(output),
        *FAKE,
        "--config",
        str(config),
        "--remote",
        "--force",
    )
    assert rerun.returncode == 0, rerun.stderr
    assert (
        f"videos: {len(HOSTILE_NAMES)} distinct, 0 sent (0.0 MB), {len(HOSTILE_NAMES)} already on the host"
        in rerun.stderr
    )
    # --force redid everything on the host too (its earlier results were set aside)
    assert f"{len(HOSTILE_NAMES)} items (0 already done)" in (job_dir(config, sshd) / "job.log").read_text()
    assert len(records(output)) == len(HOSTILE_NAMES)


def test_ctrl_c_stops_the_remote_job_and_a_rerun_resumes(
    remote_toml: Config, tmp_path: Path, sshd: Sshd
) -> None:
    config = remote_toml("venv")
    args, output = slow_remote_run(config, tmp_path, 8)
    process = start_cli(*args)
    wait(lambda: journal_lines(output) >= 1, "a first result", process=process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "stopping the job on 127.0.0.1" in stderr
    job = job_dir(config, sshd)
    assert (job / "job.exit").read_text().strip() not in ("0", "3")  # stopped, not finished
    assert running_in_session(int((job / "job.pid").read_text())) == []
    done_before = journal_lines(output)
    assert 1 <= done_before < 8
    rerun = cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert f"8 items ({done_before} already done)" in rerun.stderr
    assert [r["status"] for r in records(output)] == ["text_only"] * 8


def test_local_process_killed_then_rerun_reattaches(remote_toml: Config, tmp_path: Path, sshd: Sshd) -> None:
    config = remote_toml("venv")
    args, output = slow_remote_run(config, tmp_path, 12)  # long enough to outlast the rerun's start
    process = start_cli(*args)
    wait(lambda: journal_lines(output) >= 1, "a first result", process=process)
    process.kill()  # the local side dies; the job on the host must not
    process.communicate()
    job = job_dir(config, sshd)
    pid = int((job / "job.pid").read_text())
    assert running_in_session(pid) != []
    rerun = cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert "reattaching to the job still running on 127.0.0.1" in rerun.stderr
    assert int((job / "job.pid").read_text()) == pid  # the same job, not a second one
    assert [r["name"] for r in records(output)] == [f"item{n}" for n in range(12)]


@pytest.mark.slow
def test_remote_failure_keeps_partial_results_and_rerun_resumes(
    remote_toml: Config, tmp_path: Path, sshd: Sshd
) -> None:
    config = remote_toml("venv")
    args, output = slow_remote_run(config, tmp_path, 8)
    process = start_cli(*args)
    wait(lambda: journal_lines(output) >= 2, "two results", process=process)
    job = job_dir(config, sshd)
    leader = (job / "job.pid").read_text().strip()
    children = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", leader], capture_output=True, text=True
    ).stdout.split()
    for child in children:  # the upsampler itself dies on the host (a crash, the OOM killer...)
        os.kill(int(child), signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    assert "failed (exit 137) after" in stderr and "rerun: finished items are kept" in stderr
    kept = journal_lines(output)
    on_host = len((job / "out" / "results.json.journal.jsonl").read_text().splitlines())
    assert 2 <= kept <= on_host < 8
    rerun = cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert f"8 items ({kept} already done)" in rerun.stderr
    assert len(records(output)) == 8
    # the host resumed from its own journal: what it finished and we had not fetched is not redone
    assert f"({on_host - kept} already done)" in (job / "job.log").read_text()
