"""Video preprocessing benchmark: our PyAV path against the seed's naive OpenCV path.

Run from the repository root::

    .venv/bin/python benchmarks/media_bench.py

It generates one 720p and one 1080p H.264 clip (5 s at 24 fps, a keyframe every 2 s, textured
moving content), then times per video, median over repetitions:

* ours: probe + plan (``cosmos_workflow.planner.plan_item`` when present, else the same 480-px
  long side snapped to the 16-px grid) + decode and resize the chosen frames + write the clip;
* ours --no-clip: the same without writing the clip;
* naive (the seed's first version): OpenCV ``VideoCapture`` reads every frame in sequence, each is
  resized with ``cv2.resize``, and all are written to an mp4v clip with ``cv2.VideoWriter``.

Prints a markdown table (ms per video, videos per second, speedup over naive).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import av
import numpy as np

from cosmos_workflow.media import clip_path, probe_video, read_frames, select_frame_indices, write_clip

SECONDS, FPS, GOP = 5, 24, 48
LONG_SIDE, PATCH, NUM_FRAMES = 480, 16, 2


def make_clip(path: Path, width: int, height: int, *, seed: int = 0, seconds: int = SECONDS) -> Path:
    """Textured, moving content so the encoder produces a realistic bitrate (not flat colour);
    each ``seed`` gives different content."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(small, 8, axis=0), 8, axis=1)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt, stream.gop_size = width, height, "yuv420p", GOP
        stream.options = {"preset": "veryfast", "crf": "23"}
        for index in range(seconds * FPS):
            shift = index * 4
            picture = texture[shift % 8 : shift % 8 + height, (shift // 8) % 16 : (shift // 8) % 16 + width]
            picture = (picture.astype(np.float32) * 0.6 + np.roll(ramp, shift, axis=1) * 0.4).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def make_planner() -> Callable[[Any], tuple[tuple[int, int], list[int]]] | None:
    """The lead's planner, if it exists yet; the tokenizer is loaded once, outside the timings."""
    try:
        from cosmos_workflow.planner import PlanSettings, plan_item
        from cosmos_workflow.tokenizer import load_tokenizer
    except ImportError:
        return None
    tokenizer, settings = load_tokenizer(), PlanSettings()

    def plan(info: Any) -> tuple[tuple[int, int], list[int]]:
        chosen = plan_item("bench", "A robot arm picks up a cup.", info, settings, tokenizer)
        assert chosen.width and chosen.height, chosen.message
        return (chosen.width, chosen.height), chosen.frame_indices

    return plan


def fallback_plan(info: Any) -> tuple[tuple[int, int], list[int]]:
    """480-px long side, short side snapped to the patch grid, first two frames."""
    scale = LONG_SIDE / max(info.width, info.height)
    short = max(PATCH, round(min(info.width, info.height) * scale / PATCH) * PATCH)
    size = (LONG_SIDE, short) if info.width >= info.height else (short, LONG_SIDE)
    return size, select_frame_indices(info.frame_count, NUM_FRAMES, "first")


def ours(path: Path, out_dir: Path, planner: Callable[[Any], Any], clip: bool) -> tuple[int, int]:
    info = probe_video(path)
    size, indices = planner(info)
    frames = read_frames(info, indices, size)
    if clip:
        write_clip(frames, clip_path(out_dir, path.stem, "0123456789abcdef"), info.fps)
    return (int(size[0]), int(size[1]))


def naive(path: Path, out_dir: Path, size: tuple[int, int]) -> None:
    """The seed's first version: read every frame with OpenCV, resize each, write an mp4v clip."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or FPS
    writer = cv2.VideoWriter(str(out_dir / "naive.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        writer.write(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
    capture.release()
    writer.release()


def median_ms(run: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall-clock and process CPU milliseconds (CPU time shows the work when the machine is busy)."""
    run()  # warm-up: first-call library initialisation is not per-video cost
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="repetitions for our path")
    parser.add_argument("--naive-repeats", type=int, default=5, help="repetitions for the naive path")
    args = parser.parse_args()
    planner = make_planner()
    load_before = load_average()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for label, (width, height) in {"720p": (1280, 720), "1080p": (1920, 1080)}.items():
            video = make_clip(work / f"clip_{label}.mp4", width, height)
            plan = planner or fallback_plan
            size = ours(video, work, plan, clip=True)
            with_clip = median_ms(partial(ours, video, work, plan, clip=True), args.repeats)
            no_clip = median_ms(partial(ours, video, work, plan, clip=False), args.repeats)
            slow = median_ms(partial(naive, video, work, size), args.naive_repeats)
            rows.append((label, width, height, size, with_clip, no_clip, slow))
    print_table(rows, planner is not None, args)
    print(f"\nload average (1, 5, 15 min) before: {load_before}; after: {load_average()}")


def print_table(rows: list[tuple[Any, ...]], planned: bool, args: argparse.Namespace) -> None:
    print(
        f"planner: {'cosmos_workflow.planner.plan_item' if planned else 'fallback (planner.py absent)'}; "
        f"clips {SECONDS} s at {FPS} fps, GOP {GOP}; medians of {args.repeats} (ours) / "
        f"{args.naive_repeats} (naive) runs\n"
    )
    print("| clip | resized to | path | ms / video (wall) | videos / s | speedup vs naive | CPU ms / video |")
    print("|---|---|---|---:|---:|---:|---:|")
    for label, width, height, size, with_clip, no_clip, slow in rows:
        source = f"{label} ({width}x{height})"
        target = f"{size[0]}x{size[1]}"
        for name, (ms, cpu) in (
            ("ours: probe+plan+decode+resize+clip", with_clip),
            ("ours --no-clip", no_clip),
            ("naive OpenCV (all frames, mp4v)", slow),
        ):
            speedup = slow[0] / ms
            print(
                f"| {source} | {target} | {name} | {ms:.1f} | {1000 / ms:.1f} | {speedup:.1f}x | {cpu:.1f} |"
            )


if __name__ == "__main__":
    main()
