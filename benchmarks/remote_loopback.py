"""The remote path's cost on loopback: ``upsample-prompts --remote`` against the test sshd (the
"GPU host" is this machine, reached over SSH as another user), next to a local run of the batch.

Run from the repository root, after ``export COSMOS_TEST_SSHD=$(bash scripts/ci/sshd.sh)`` and
``bash scripts/ci/remote_venv.sh`` (as root)::

    .venv/bin/python benchmarks/remote_loopback.py                     # 200 shots, 50 1080p videos

It generates ``--videos`` distinct 1080p H.264 clips (textured, moving; ``--seconds`` long) and
``--shots`` items over them (each video shared by several shots), then times, end to end through
the CLI as a user runs it (wall clock, process start included):

1. ``local``: ``upsample-prompts`` here;
2. ``remote, first``: ``--remote`` into a fresh ``remote_dir``: every video is uploaded;
3. ``remote, again``: the same command with ``--force`` (everything redone, nothing changed):
   the videos are on the host already, so only the batch file goes over.

The engine is the scripted ``fake`` engine; ``--seconds-per-batch`` makes each engine call take
that long, standing in for a model's time (1.2 s per batch of 8 is one H100's rate, 6.8
requests/s, measured in BENCHMARKS.md). The figures report what the remote path adds: connect,
wheel check, uploads, job start, streaming results back, fetching every clip.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from media_bench import make_clip

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shots", type=int, default=200)
    parser.add_argument("--videos", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=3, help="length of each 1080p clip")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seconds-per-batch", type=float, default=1.2, help="the stand-in model's time")
    parser.add_argument("--python", default="~/venv/bin/python", help="the host's interpreter (venv mode)")
    return parser.parse_args()


def make_inputs(folder: Path, videos: int, shots: int, seconds: int) -> Path:
    clips = [
        make_clip(folder / f"clip_{n:03d}.mp4", 1920, 1080, seed=n, seconds=seconds) for n in range(videos)
    ]
    items = [
        {
            "name": f"shot_{n:04d}",
            "prompt": f"shot {n}: a car drives through the scene",
            "video_path": str(clips[n % videos]),
        }
        for n in range(shots)
    ]
    path = folder / "prompts.json"
    path.write_text(json.dumps(items))
    return path


def config_file(folder: Path, python: str) -> Path:
    info = json.loads(Path(os.environ["COSMOS_TEST_SSHD"]).read_text())
    path = folder / "cosmos-workflow.toml"
    path.write_text(
        f"""[remote]
host = "{info["host"]}"
port = {info["port"]}
user = "{info["user"]}"
ssh_key = "{info["client_key"]}"
known_hosts = "{info["known_hosts"]}"
mode = "venv"
python = "{python}"

[paths]
remote_dir = "~/bench-{uuid.uuid4().hex[:8]}"
"""
    )
    return path


def timed(args: list[str]) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "cosmos_workflow", *args], capture_output=True, text=True, cwd=ROOT
    )
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{done.stderr}")
    return elapsed, done.stderr


def sent(stderr: str) -> str:
    videos = re.search(r"videos: (\d+) distinct, (\d+) sent \(([\d.]+) MB\)", stderr)
    batch = re.search(r"batch: \d+ items \(([\d.]+) KB\)", stderr)
    if not videos or not batch:
        return "-"
    return f"{videos.group(2)} of {videos.group(1)} videos ({videos.group(3)} MB) + batch {batch.group(1)} KB"


def main() -> None:
    args = parse_args()
    info = json.loads(Path(os.environ["COSMOS_TEST_SSHD"]).read_text())
    with tempfile.TemporaryDirectory(prefix="remote-bench-") as tmp:
        folder = Path(tmp)
        started = time.monotonic()
        prompts = make_inputs(folder, args.videos, args.shots, args.seconds)
        size = sum(p.stat().st_size for p in folder.glob("clip_*.mp4")) / 1e6
        made = time.monotonic() - started
        print(f"inputs: {args.videos} videos 1920x1080 ({size:.0f} MB), {args.shots} shots ({made:.0f} s)")
        config = config_file(folder, args.python)
        engine = ["--engine", "fake", "--model", "fake", "--batch-size", str(args.batch_size)]
        engine += ["--engine-option", f"seconds_per_batch={args.seconds_per_batch}", "--config", str(config)]
        run = ["upsample-prompts", str(prompts), *engine]
        local, _ = timed([*run, "-o", str(folder / "local.json")])
        first, first_err = timed([*run, "-o", str(folder / "remote.json"), "--remote"])
        again, again_err = timed([*run, "-o", str(folder / "remote.json"), "--remote", "--force"])
        load = os.getloadavg()[0]
        remote_dir = re.search(r'remote_dir = "~/(.+)"', config.read_text())
        if remote_dir:  # the host is this machine: remove its copy with the temp folder
            subprocess.run(["rm", "-rf", "--", f"{info['home']}/{remote_dir.group(1)}"], check=False)
    engine = f"fake, {args.seconds_per_batch} s per batch of {args.batch_size}"
    print(f"\nload average after: {load:.1f}; engine: {engine}\n")
    print("| run | wall s | vs local | sent to the host |")
    print("|---|---|---|---|")
    print(f"| local | {local:.1f} | | |")
    for name, elapsed, stderr in (
        ("remote, first", first, first_err),
        ("remote, again (--force)", again, again_err),
    ):
        print(f"| {name} | {elapsed:.1f} | {100 * (elapsed / local - 1):+.1f}% | {sent(stderr)} |")


if __name__ == "__main__":
    main()
