"""A generated batch of output records for the review page: many shots, every status, real videos.

The videos are textured (blocks of noise over a moving gradient), the hard case for JPEG, so the
thumbnails come out near their 20 KB limit and the page is as large as a real batch would make it.
Each record points at one of a few videos with its own frame indices, so no two cards show the
same pictures. Used by ``tests/e2e/test_report_browser.py`` and ``benchmarks/report_load.py``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import av
import numpy as np

from cosmos_workflow.specs.results import UpsampleRecord

VIDEO_SIZE = (640, 360)
SENT_SIZE = (480, 272)
VIDEO_FRAMES = 24
SCENE = (
    "a slow dolly shot along a rain-soaked street at dusk, neon signs reflecting in puddles, "
    "pedestrians with umbrellas crossing between parked cars while steam rises from a grate; "
    "the camera holds steady as a delivery cyclist passes through warm shop light and cold blue shadow"
)
WORDS = tuple(SCENE.split())


def textured_video(
    path: Path, seed: int, size: tuple[int, int] = VIDEO_SIZE, frames: int = VIDEO_FRAMES
) -> Path:
    """An H.264 clip whose every frame differs (noise blocks drifting over a gradient)."""
    width, height = size
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (height // 8 + 4, width // 8 + 4, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1).astype(np.float32)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=24)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23"}
        for index in range(frames):
            crop = texture[index % 32 : index % 32 + height, :width]
            picture = (crop * 0.5 + np.roll(ramp, index * 9, axis=1) * 0.5).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


_EVERY = (("error", 40), ("fallback", 25), ("text_only", 10))


def _prompt(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def _record(number: int, video: Path, rng: random.Random, videos: int) -> UpsampleRecord:
    """Shot ``number``: mostly ok; every 10th text_only, every 25th fallback, every 40th error."""
    status = next((s for s, every in _EVERY if number % every == 0), "ok")
    first = (number // videos) % (VIDEO_FRAMES - 1)  # early frames, as "first" sampling reads
    indices = [] if status == "text_only" else [first, first + 1]
    original = _prompt(rng, rng.randint(4, 12))
    upsampled = {"error": None, "fallback": original}.get(status, _prompt(rng, rng.randint(60, 140)))
    completion = 0 if upsampled is None or status == "fallback" else len(upsampled.split()) + 20
    image = 544 * len(indices)
    return UpsampleRecord(
        name=f"shot_{number:04d}",
        original_prompt=original,
        upsampled_prompt=upsampled,
        video_path=str(video),
        status=status,  # type: ignore[arg-type]
        error="GPU ran out of memory; rerun with --batch-size 4" if status in ("error", "fallback") else None,
        warning="video unreadable; upsampled from the text alone" if status == "text_only" else None,
        frames=len(indices),
        frame_indices=indices,
        width=SENT_SIZE[0] if indices else None,
        height=SENT_SIZE[1] if indices else None,
        source_width=VIDEO_SIZE[0],
        source_height=VIDEO_SIZE[1],
        prompt_tokens=image + 40,
        image_tokens=image,
        text_tokens=40,
        completion_tokens=completion,
        max_tokens=300,
        max_model_len=4096,
        finish_reason="stop" if completion else None,
        plan_changes=["resolution 640x360 -> 480x272 (requested max 480)"] if number % 3 == 0 else [],
        model="tiny-random",
        engine="hf",
        sampling={"temperature": 0.6, "top_p": 1.0, "seed": None},
        key=f"{number:032x}",
        timestamp=f"2026-01-01T00:{number // 60 % 60:02d}:{number % 60:02d}+00:00",
    )


def make_batch(folder: Path, count: int, videos: int = 16) -> Path:
    """``folder/batch.json`` (``count`` records) and ``folder/videos/*.mp4``; returns the JSON."""
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    clips = [textured_video(folder / "videos" / f"clip_{i}.mp4", seed=i) for i in range(videos)]
    rng = random.Random(0)
    records = [_record(n, clips[n % videos], rng, videos) for n in range(1, count + 1)]
    path = folder / "batch.json"
    path.write_text(json.dumps([r.model_dump(mode="json") for r in records], indent=1), encoding="utf-8")
    return path
