"""Regenerate the example videos (synthetic scenes; no third-party footage).

python examples/make_examples.py
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

HERE = Path(__file__).parent
SHOTS = {
    "city_night_720p.mp4": (1280, 720, (20, 30, 80), (255, 200, 60)),
    "forest_1080p.mp4": (1920, 1080, (20, 90, 30), (200, 230, 120)),
    "portrait_street_720x1280.mp4": (720, 1280, (90, 90, 100), (240, 90, 60)),
}


def scene(
    t: int, width: int, height: int, sky: tuple[int, int, int], light: tuple[int, int, int]
) -> np.ndarray:
    """A gradient sky, a horizon band and a light moving left to right."""
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    image = (np.array(sky, np.float32) * (1.0 - 0.6 * ys)).repeat(width, axis=1)
    image[int(height * 0.7) :, :] = np.array(sky, np.float32) * 0.3
    cx, cy, r = int(width * (0.1 + 0.03 * t)), int(height * 0.4), max(8, min(width, height) // 12)
    yy, xx = np.ogrid[:height, :width]
    image[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = light
    return image.clip(0, 255).astype(np.uint8)


def write(
    path: Path, width: int, height: int, sky: tuple[int, int, int], light: tuple[int, int, int]
) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "35", "preset": "veryslow"}
        for t in range(24):
            frame = av.VideoFrame.from_ndarray(scene(t, width, height, sky, light), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


if __name__ == "__main__":
    (HERE / "videos").mkdir(exist_ok=True)
    for name, (width, height, sky, light) in SHOTS.items():
        write(HERE / "videos" / name, width, height, sky, light)
        print(name, (HERE / "videos" / name).stat().st_size, "bytes")
