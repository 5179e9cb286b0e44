"""``cosmos-workflow remote check``: is the host ready for a run? One verdict per check, with the fix.

The checks, in order: the host key (against known_hosts), authentication, ``remote_dir`` writable
and its free disk, Docker and the image (docker mode) or the interpreter (venv mode), each with
torch importable (the model engines need it), the GPUs
(``nvidia-smi``), the checkpoint. Without a connection the checks after it are skipped. Nothing
is changed on the host except a probe file written and removed in ``remote_dir`` (and, with
``host_key_policy = "accept-new"``, an unknown key recorded as any connection would).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from cosmos_workflow.errors import CosmosWorkflowError, RemoteError
from cosmos_workflow.executors.remote.hostkeys import describe_key, host_key_status
from cosmos_workflow.executors.remote.settings import RemoteConfig
from cosmos_workflow.executors.remote.ssh import Connection
from cosmos_workflow.executors.remote.transfer import RemoteDir

Verdict = Literal["ok", "warn", "fail", "skip"]

#: below this, a run will not fit its uploads and results; below WARN_GIB, it may not
FAIL_GIB = 1.0
WARN_GIB = 20.0
MIN_PYTHON = (3, 11)
#: program text (constant) for the host's interpreter: torch's version, or the import's error
TORCH_PROBE = "import torch; print(torch.__version__)"


@dataclass(frozen=True)
class CheckResult:
    """One line of ``remote check``."""

    name: str
    verdict: Verdict
    detail: str
    fix: str = ""


Check = Callable[[RemoteConfig, Connection], CheckResult]


def check_remote(config: RemoteConfig, *, connection: Connection | None = None) -> Iterator[CheckResult]:
    """Every check, in order; checks that need what failed before them are reported skipped."""
    yield (key := _host_key(config))
    if key.verdict == "fail":
        yield from (
            CheckResult(name, "skip", "no trusted connection") for name, _ in _host_checks(config, True)
        )
        return
    connection = connection or Connection(config.remote)
    yield (auth := _authentication(config, connection))
    if auth.verdict == "fail":
        yield from (CheckResult(name, "skip", "not connected") for name, _ in _host_checks(config))
        return
    try:
        for name, check in _host_checks(config):
            yield _guarded(name, check, config, connection)
    finally:
        connection.close()


def _host_checks(config: RemoteConfig, with_auth: bool = False) -> list[tuple[str, Check]]:
    """The checks made over the connection, by name (``authentication`` first when asked)."""
    runtime: list[tuple[str, Check]] = (
        [("docker", _docker), ("image", _image)]
        if config.remote.mode == "docker"
        else [("interpreter", _interpreter)]
    )
    checks = [("remote_dir", _remote_dir), *runtime, ("gpus", _gpus), ("checkpoint", _checkpoint)]
    return [("authentication", _authentication), *checks] if with_auth else checks


def _guarded(name: str, check: Check, config: RemoteConfig, connection: Connection) -> CheckResult:
    try:
        return check(config, connection)
    except CosmosWorkflowError as exc:
        return CheckResult(name, "fail", str(exc))


def _host_key(config: RemoteConfig) -> CheckResult:
    settings = config.remote
    try:
        status = host_key_status(settings)
    except RemoteError as exc:
        return CheckResult("host key", "fail", str(exc), "check [remote] host and port")
    seen = describe_key(status.key)
    if status.trusted:
        return CheckResult("host key", "ok", f"{status.name} {seen} is in {settings.known_hosts}")
    if status.changed:
        return CheckResult(
            "host key",
            "fail",
            f"{status.name} sent {seen}, but {settings.known_hosts} has {describe_key(status.known[0])}",
            "if the host was reinstalled, check the new fingerprint, then: "
            + settings.command("remote", "trust", "--replace"),
        )
    if settings.host_key_policy == "accept-new":
        return CheckResult(
            "host key", "warn", f"{status.name} {seen} is new; accept-new records it on connect"
        )
    return CheckResult(
        "host key",
        "fail",
        f"{status.name} {seen} is not in {settings.known_hosts}",
        "check the fingerprint with the host's admin, then: " + settings.command("remote", "trust"),
    )


def _authentication(config: RemoteConfig, connection: Connection) -> CheckResult:
    try:
        connection.open()
    except CosmosWorkflowError as exc:
        return CheckResult("authentication", "fail", str(exc))
    how = f"key {config.remote.ssh_key}" if config.remote.ssh_key else "an ssh-agent key"
    return CheckResult("authentication", "ok", f"{config.remote.address} accepted {how}")


def _remote_dir(config: RemoteConfig, connection: Connection) -> CheckResult:
    folder = RemoteDir(connection, config.remote_dir)
    probe = "tmp/.write-probe"
    folder.write_bytes(probe, b"ok")
    folder.remove(probe)
    df = connection.run(["df", "-Pk", "--", folder.root]).stdout.splitlines()
    free_gib = int(df[-1].split()[3]) / 2**20
    verdict, fix = disk_verdict(free_gib)
    return CheckResult("remote_dir", verdict, f"{folder.root} is writable; {free_gib:.1f} GiB free", fix)


def disk_verdict(free_gib: float) -> tuple[Verdict, str]:
    """The remote folder's verdict and fix for ``free_gib`` of free disk space."""
    if free_gib < FAIL_GIB:
        return "fail", "free disk space there or set [paths] remote_dir elsewhere"
    if free_gib < WARN_GIB:
        return "warn", "large batches of videos may not fit; free some space"
    return "ok", ""


def _docker(config: RemoteConfig, connection: Connection) -> CheckResult:
    result = connection.run(["docker", "version", "--format", "{{.Server.Version}}"], check=False)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["docker not found"])[-1]
        return CheckResult(
            "docker",
            "fail",
            reason,
            f"install Docker on the host and let {config.remote.user} use it "
            f'(sudo usermod -aG docker {config.remote.user}), or set mode = "venv" in [remote]',
        )
    return CheckResult("docker", "ok", f"Docker server {result.stdout.strip()}")


def _image(config: RemoteConfig, connection: Connection) -> CheckResult:
    image = config.image
    result = connection.run(["docker", "image", "inspect", "--format", "{{.Id}}", image], check=False)
    if result.returncode != 0:
        return CheckResult(
            "image", "fail", f"{image} is not on the host", f"on the host: docker pull {shlex.quote(image)}"
        )
    seen = f"{image} ({result.stdout.strip()[:19]})"
    torch, why = torch_version(connection, ["docker", "run", "--rm", "--network=none", image, "python3"])
    if torch is None:
        fix = "use an image with torch (the Cosmos image has it), or set [docker] image to one"
        return CheckResult("image", "fail", f"{seen}: torch does not import there ({why})", fix)
    return CheckResult("image", "ok", f"{seen} with torch {torch}")


def torch_version(connection: Connection, python: list[str]) -> tuple[str | None, str]:
    """torch's version in the host's interpreter ``python`` (an argv), or None and why it does not
    import (the engines that run a model need it; those that run none, ``needs_gpu = False``, do not)."""
    result = connection.run([*python, "-c", TORCH_PROBE], check=False, timeout=600)
    if result.returncode == 0 and result.stdout.strip():
        return result.stdout.strip().splitlines()[-1], ""
    return None, (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]


def _interpreter(config: RemoteConfig, connection: Connection) -> CheckResult:
    python = connection.expand(config.remote.python)
    code = "import sys; print('%d.%d' % sys.version_info[:2]); import pip"
    result = connection.run([python, "-c", code], check=False)
    fix = (
        f"set [remote] python to a Python {'.'.join(map(str, MIN_PYTHON))}+ interpreter with pip "
        "(e.g. ~/venv/bin/python)"
    )
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
        return CheckResult("interpreter", "fail", f"{python}: {reason}", fix)
    version = tuple(int(part) for part in result.stdout.split()[0].split("."))
    if version < MIN_PYTHON:
        return CheckResult("interpreter", "fail", f"{python} is Python {result.stdout.strip()}", fix)
    seen = f"{python}: Python {result.stdout.strip()} with pip"
    torch, why = torch_version(connection, [python])
    if torch is None:
        fix = f"install torch there ({python} -m pip install torch, the build for the host's CUDA)"
        return CheckResult("interpreter", "fail", f"{seen}, but torch does not import ({why})", fix)
    return CheckResult("interpreter", "ok", f"{seen} and torch {torch}")


def _gpus(config: RemoteConfig, connection: Connection) -> CheckResult:
    wanted = config.remote.gpus
    found = gpu_names(connection)
    if not found:
        return CheckResult(
            "gpus",
            "warn",
            "nvidia-smi found no GPU: the job will run on the CPU (only the tiny model is practical)",
            "install the NVIDIA driver on the host for real checkpoints",
        )
    if len(found) < wanted:
        detail = f"{len(found)} GPU(s), gpus = {wanted}: {'; '.join(found)}"
        return CheckResult("gpus", "fail", detail, f"set gpus = {len(found)} in [remote]")
    return CheckResult("gpus", "ok", f"{len(found)} GPU(s), using {wanted}: {'; '.join(found)}")


def gpu_names(connection: Connection) -> list[str]:
    """``name, memory`` of each GPU ``nvidia-smi`` lists on the host; empty without GPU or driver."""
    query = ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"]
    result = connection.run(query, check=False)
    if result.returncode != 0:
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def _checkpoint(config: RemoteConfig, connection: Connection) -> CheckResult:
    configured = config.checkpoint_dir
    if configured is None:
        return CheckResult(
            "checkpoint", "skip", "no [docker] checkpoint_dir: the run's --model names the model"
        )
    folder = connection.expand(configured)
    listing = connection.run(["ls", "-1", "--", folder], check=False)
    if listing.returncode != 0:
        return CheckResult(
            "checkpoint",
            "fail",
            f"{folder} is not readable on the host",
            "download the checkpoint there or fix [docker] checkpoint_dir",
        )
    files = set(listing.stdout.split("\n"))
    if {"params.json", "consolidated.safetensors"} <= files or "config.json" in files:
        return CheckResult("checkpoint", "ok", f"{folder}")
    return CheckResult(
        "checkpoint",
        "warn",
        f"{folder} has neither params.json + consolidated.safetensors (Mistral) nor config.json (HF)",
        "point [docker] checkpoint_dir at the checkpoint folder itself",
    )
