"""Several GPUs from one command: ``num_gpu > 1`` starts torchrun as a child process.

The child is what a user would start by hand::

    CUDA_VISIBLE_DEVICES=<cuda_devices> python -m torch.distributed.run --standalone \\
        --nproc_per_node=<num_gpu> -m cosmos_workflow upsample-prompts PROMPTS -o OUTPUT <settings>

with every setting that shapes the run passed as a flag (flags rise above the config file and the
environment, so the ranks run exactly this run's options; ``workers`` and ``prefetch_batches``,
which have no flag, go as ``COSMOS_*`` variables). Its ranks shard, plan, run, journal and merge
as any torchrun job does (:mod:`cosmos_workflow.executors.torchrun`). This process plans nothing:
it follows the ranks' journals as they grow for progress, and when the child ends it checks that
every item has a result. If one has none, it raises one line with the ranks' own error (or the
rank's exit code) and where their whole output went (``<output>.torchrun.log``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cosmos_workflow.engines import engine_class
from cosmos_workflow.engines.environment import is_torchrun_variable
from cosmos_workflow.errors import ConfigError, LaunchError
from cosmos_workflow.executors.base import KeyedItem
from cosmos_workflow.files import write_json_atomic
from cosmos_workflow.journal import done_keys, journal_path_for, journals_for

if TYPE_CHECKING:
    from cosmos_workflow.config import RunOptions
    from cosmos_workflow.runner import Progress

log = logging.getLogger("cosmos_workflow")

_ERROR_LINE = re.compile(r"^error: (.+)$", re.MULTILINE)
#: torchrun's report of the first rank that failed ("Root Cause (first observed failure)")
_ROOT_CAUSE = re.compile(
    r"Root Cause.*?^\s*rank\s*:\s*(\d+).*?^\s*exitcode\s*:\s*(-?\d+)", re.DOTALL | re.MULTILINE
)


def device_limit(options: RunOptions) -> tuple[int, str]:
    """How many processes this machine can give a device each, and what those devices are: the
    GPUs listed or visible, else (no GPU, or an engine that uses none) the CPU cores this process
    may run on."""
    if options.cuda_devices:
        return len(options.cuda_devices.split(",")), f"GPU(s) in cuda_devices {options.cuda_devices!r}"
    engine = options.engine.engine
    needs_gpu = engine_class(engine).needs_gpu
    gpus = _visible_gpus() if needs_gpu else 0
    if gpus:
        return gpus, "GPU(s) visible"
    why = "no GPU visible" if needs_gpu else f"the {engine} engine uses no GPU"
    return _usable_cores(), f"CPU cores this process may use ({why})"


def _visible_gpus() -> int:
    if importlib.util.find_spec("torch") is None:
        return 0
    import torch

    return int(torch.cuda.device_count())


def _usable_cores() -> int:
    """The cores of this process' affinity (a container or taskset may allow fewer than exist)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def child_arguments(options: RunOptions) -> list[str]:
    """``upsample-prompts`` flags that give the ranks exactly ``options``."""
    plan, sampling, engine = options.plan, options.sampling, options.engine
    args = ["--preprocess-videos" if plan.preprocess else "--no-preprocess"]
    args += ["--max-resolution", str(plan.max_resolution), "--num-frames", str(plan.num_frames)]
    args += ["--frame-sampling", plan.frame_sampling, "--max-model-len", str(plan.max_model_len)]
    args += ["--max-tokens", str(sampling.max_tokens), "--temperature", str(sampling.temperature)]
    args += ["--top-p", str(sampling.top_p), "--engine", engine.engine, "--model", engine.model]
    args += ["--batch-size", str(options.batch_size), "--on-error", options.on_error]
    args += ["--num-gpu", str(options.num_gpu)]
    if options.first_batch:  # left out at its default: the commands of earlier runs stay as they were
        args += ["--first-batch", str(options.first_batch)]
    if options.cuda_devices:
        args += ["--cuda-devices", options.cuda_devices]
    if sampling.seed is not None:
        args += ["--seed", str(sampling.seed)]
    if engine.device:
        args += ["--device", engine.device]
    for key, value in engine.options.items():
        if value is not None:  # an unset option: the engine's default, as when absent
            args += ["--engine-option", f"{key}={str(value).lower() if isinstance(value, bool) else value}"]
    args += ["--ascii-only" if sampling.ascii_only else "--any-text"]
    if options.encoder_tokenizer is not None:
        args += [
            "--encoder-tokenizer",
            str(options.encoder_tokenizer),
            "--encoder-limit",
            str(options.encoder_limit),
        ]
    args += ["--clips-dir", str(options.clips_dir)] if options.clips_dir else ["--no-clips"]
    return args + (["--force"] if options.force else [])


def child_environment(options: RunOptions, env: Mapping[str, str]) -> dict[str, str]:
    """This process' environment, with the run's GPUs and the settings that have no flag."""
    child = {name: value for name, value in env.items() if not is_torchrun_variable(name)}
    if options.cuda_devices:
        child["CUDA_VISIBLE_DEVICES"] = options.cuda_devices
    child["COSMOS_WORKERS"] = str(options.workers)
    child["COSMOS_PREFETCH_BATCHES"] = str(options.prefetch_batches)
    child["PYTHONUNBUFFERED"] = "1"  # the log file fills as the ranks write
    if options.plan.system_prompt:  # the preset's or a file's text: the ranks count and send the same
        child["COSMOS_SYSTEM_PROMPT"] = options.plan.system_prompt
    return child


def failure_reason(text: str) -> str:
    """The ranks' own one-line error, else the failed rank and its exit code, from their output."""
    error = _ERROR_LINE.search(text)
    if error:
        return error.group(1).strip()
    failed = _ROOT_CAUSE.search(text)
    if failed:
        return f"rank {failed.group(1)} exited with code {failed.group(2)}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "the processes printed nothing"


class JournalFollower:
    """New records in the ranks' journals since it was made: the distinct wanted keys seen.

    Reads only what was appended since the last poll; a journal set aside and started anew
    (``--force``) is read from its start.
    """

    def __init__(self, output: Path, wanted: set[str]) -> None:
        self.output = output
        self.wanted = wanted
        self.seen: set[str] = set()
        self._read: dict[Path, tuple[int, int]] = {}
        for path in self._journals():
            stat = path.stat()
            self._read[path] = (stat.st_ino, stat.st_size)

    def poll(self) -> int:
        """How many wanted keys appeared since the last poll."""
        before = len(self.seen)
        for path in self._journals():
            self.seen.update(key for key in self._new_keys(path) if key in self.wanted)
        return len(self.seen) - before

    def _journals(self) -> list[Path]:
        single = journal_path_for(self.output)
        return [path for path in journals_for(self.output) if path != single]

    def _new_keys(self, path: Path) -> list[str]:
        try:
            with path.open("rb") as handle:
                inode = os.fstat(handle.fileno()).st_ino
                known, offset = self._read.get(path, (inode, 0))
                handle.seek(offset if known == inode else 0)
                data = handle.read()
                start = handle.tell() - len(data)
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next poll
        self._read[path] = (inode, start + len(complete))
        return [key for line in complete.splitlines() if (key := _key_of(line))]


def _key_of(line: bytes) -> str | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None  # a line torn by a killed rank
    key = record.get("key") if isinstance(record, dict) else None
    return key if isinstance(key, str) else None


class TorchrunLauncher:
    """Runs a batch as ``torchrun --nproc_per_node=num_gpu`` in a child process."""

    name = "torchrun-launcher"
    #: as an executor's: this process guards the single-process journal (each rank writes its own)
    journal_suffix = ""
    #: as an executor's: this process reports the prompts file's problems
    primary = True

    def __init__(
        self,
        num_gpu: int,
        cuda_devices: str | None = None,
        *,
        python: str = sys.executable,
        poll_s: float = 0.5,
    ) -> None:
        self.num_gpu = num_gpu
        self.cuda_devices = cuda_devices
        self.python = python
        self.poll_s = poll_s

    def adapt(self, options: RunOptions) -> RunOptions:
        """As an executor's: the options as given (each rank adapts them to itself)."""
        return options

    def close(self) -> None:
        """As an executor's: nothing is held between runs (the child process ends with its run)."""

    def command(self, prompts: Path, output: Path, options: RunOptions) -> list[str]:
        torchrun = [self.python, "-m", "torch.distributed.run", "--standalone"]
        torchrun.append(f"--nproc_per_node={self.num_gpu}")
        job = ["-m", "cosmos_workflow", "upsample-prompts", str(prompts), "-o", str(output)]
        return [*torchrun, *job, *child_arguments(options), "--quiet"]

    def run(
        self,
        keyed: Sequence[KeyedItem],
        options: RunOptions,
        *,
        output: Path,
        source: Path | None = None,
        progress: Progress | None = None,
    ) -> int:
        """Run the items (those of ``source`` when given, else written to a file beside
        ``output``); return how many were already done. Raises :class:`LaunchError` when the
        child ends with items that have no result."""
        _require_torch(self.num_gpu)
        wanted = {k.key for k in keyed}
        clips = options.clips_folder(output)
        already = set() if options.force else done_keys(output, clips_dir=clips) & wanted
        if progress:
            progress(len(already), total=len(wanted))
        follower = JournalFollower(output, wanted)
        prompts = source or _write_items(keyed, output)
        try:
            code = self._follow(self.command(prompts, output, options), output, options, follower, progress)
        finally:
            if source is None:
                prompts.unlink(missing_ok=True)
        missing = wanted - already - follower.seen
        if missing:
            raise self._failure(code, len(missing), len(wanted), log_path_for(output))
        return len(already)

    def _follow(
        self,
        command: list[str],
        output: Path,
        options: RunOptions,
        follower: JournalFollower,
        progress: Progress | None,
    ) -> int:
        """Start the child, report new journal records every ``poll_s``; its exit code."""
        log_path = log_path_for(output)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting %d processes (torchrun); their output goes to %s", self.num_gpu, log_path)
        with log_path.open("w", encoding="utf-8") as sink:
            child = subprocess.Popen(
                command, stdout=sink, stderr=subprocess.STDOUT, env=child_environment(options, os.environ)
            )
            try:
                while child.poll() is None:
                    time.sleep(self.poll_s)
                    _report(progress, follower.poll())
            except BaseException:
                _stop(child)
                raise
        _report(progress, follower.poll())
        return child.returncode

    def _failure(self, code: int, missing: int, total: int, log_path: Path) -> LaunchError:
        reason = failure_reason(log_path.read_text(encoding="utf-8", errors="replace"))
        return LaunchError(
            f"torchrun ({self.num_gpu} processes) ended with exit code {code} and {missing} of {total} "
            f"items not done: {reason} (the processes' output: {log_path}); rerun the same command "
            "to resume"
        )


def log_path_for(output: Path) -> Path:
    """Where the ranks' output goes: ``out.json`` -> ``out.json.torchrun.log``."""
    return output.with_name(f"{output.name}.torchrun.log")


def _write_items(keyed: Sequence[KeyedItem], output: Path) -> Path:
    """Items that came from no file (specs): a prompts file beside the output, videos absolute
    (the ranks resolve relative paths against the file's folder)."""
    path = output.with_name(f".{output.name}.items.json")
    items = [
        {
            "name": k.item.name,
            "prompt": k.item.prompt,
            "video_path": str(k.item.video_path.resolve()) if k.item.video_path else None,
        }
        for k in keyed
    ]
    write_json_atomic(path, items)
    return path


def _require_torch(num_gpu: int) -> None:
    if importlib.util.find_spec("torch") is None:
        raise ConfigError(
            f"num_gpu {num_gpu} starts torchrun, which comes with torch; install torch, or use --num-gpu 1"
        )


def _report(progress: Progress | None, count: int) -> None:
    if progress and count:
        progress(count)


def _stop(child: subprocess.Popen[bytes]) -> None:
    """Interrupted (Ctrl-C, an error here): stop the ranks too; their journals keep what is done."""
    child.terminate()
    try:
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
