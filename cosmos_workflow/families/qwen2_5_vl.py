"""Qwen2.5-VL (Cosmos-Reason1-7B, the prompt refiner of Cosmos-Predict2): exact vision arithmetic.

Each side is resized to a multiple of 28 (14-px patches merged 2x2) with the pixel count kept
within the processor's [min_pixels, max_pixels] (:func:`smart_resize`, the processor's own rule);
frames go in pairs (temporal patch 2, an odd count repeats the last frame). A video of ``T``
frames at H'xW' costs ceil(T/2) x (H'/28) x (W'/28) tokens, an image (H'/28) x (W'/28), each plus
``<|vision_start|>`` and ``<|vision_end|>``. Text is counted with the checkpoint's own
``tokenizer.json`` in its own chat template. One frame is sent as an image, two or more as a video.

The pixel arrays are the processor's (rescaled, normalised, cut into patches of
3 x 2 x 14 x 14 = 1176 values), computed here with numpy: transformers' video processor needs
torchvision, which this project does not install.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from cosmos_workflow.errors import ConfigError
from cosmos_workflow.families.base import Family
from cosmos_workflow.tokenizer import Encoding, ascii_token_ids

MERGE = 2
PATCH = 14
TEMPORAL = 2
FACTOR = PATCH * MERGE
#: the transformers processor's defaults, used where the checkpoint's preprocessor config is silent
DEFAULT_MIN_PIXELS = 56 * 56
DEFAULT_MAX_PIXELS = 28 * 28 * 1280
DEFAULT_MEAN = (0.48145466, 0.4578275, 0.40821073)
DEFAULT_STD = (0.26862954, 0.26130258, 0.27577711)
#: larger than any side the pixel limits allow: the pixel count, not a side, is Qwen's cap
MAX_LONG_SIDE = 16384


def smart_resize(
    height: int,
    width: int,
    factor: int = FACTOR,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[int, int]:
    """(height, width) as the Qwen2-VL processor resizes: multiples of ``factor``, the pixel count
    within [min_pixels, max_pixels], the aspect kept as closely as the grid allows."""
    if max(height, width) / min(height, width) > 200:
        raise ConfigError(f"a {width}x{height} frame is beyond the 200:1 aspect Qwen2.5-VL accepts")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class VisionIds:
    """The checkpoint's vision token ids (config.json)."""

    image_pad: int
    video_pad: int
    start: int
    end: int


@dataclass(frozen=True)
class Processor:
    """The image processor's settings (preprocessor_config.json)."""

    min_pixels: int = DEFAULT_MIN_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS
    mean: tuple[float, ...] = DEFAULT_MEAN
    std: tuple[float, ...] = DEFAULT_STD

    def resize(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) the processor makes of a frame of this size."""
        h, w = smart_resize(height, width, FACTOR, self.min_pixels, self.max_pixels)
        return w, h


class Qwen25VLFamily(Family):
    """Requests as Qwen2.5-VL sees them: one user message with an image or a video, then the prompt."""

    name: ClassVar[str] = "qwen2_5_vl"
    title: ClassVar[str] = "Qwen2.5-VL / Cosmos-Reason1"
    model_types: ClassVar[tuple[str, ...]] = ("qwen2_5_vl",)
    step: ClassVar[int] = FACTOR

    def __init__(self, folder: Path, system: str | None = None) -> None:
        self.folder = folder
        self.system = system
        config = _read_json(folder / "config.json")
        self.ids = VisionIds(
            image_pad=int(config.get("image_token_id", 151655)),
            video_pad=int(config.get("video_token_id", 151656)),
            start=int(config.get("vision_start_token_id", 151652)),
            end=int(config.get("vision_end_token_id", 151653)),
        )
        self.processor = _processor(folder)
        self._tokenizer = _load_tokenizer(folder)
        self._template = _chat_template(folder)
        self.eos_ids = _eos_ids(folder, config)

    @classmethod
    def for_model(cls, model: str | Path | None, system: str | None = None) -> Qwen25VLFamily:
        if model is None:
            raise ConfigError("a Qwen2.5-VL family needs its checkpoint folder (--model)")
        return cls(Path(model).expanduser(), system)

    @property
    def max_long_side(self) -> int:
        return MAX_LONG_SIDE

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one family per checkpoint; prompts repeat in plans
    def text_tokens(self, prompt: str) -> int:
        return len(self._chat_ids(prompt, None))

    def vision_tokens(self, frames: int, width: int, height: int) -> int:
        if frames <= 0:
            return 0
        w, h = self.processor.resize(width, height)
        return math.ceil(frames / TEMPORAL) * (h // FACTOR) * (w // FACTOR) + 2

    def fitted_size(self, width: int, height: int, long_side: int) -> tuple[int, int]:
        """The processor's own size when ``long_side`` is the source's; smaller asks scale the
        pixel cap by the square of the side's ratio (never below the processor's minimum)."""
        limits = self.processor
        if long_side + self.step > max(width, height):
            return limits.resize(width, height)
        scaled = width * height * (long_side / max(width, height)) ** 2
        cap = int(min(max(scaled, limits.min_pixels), limits.max_pixels))
        h, w = smart_resize(height, width, FACTOR, min(limits.min_pixels, cap), cap)
        return limits.resize(w, h)

    def encode(self, prompt: str, frames: Sequence[np.ndarray], *, pixel_values: bool = True) -> Encoding:
        video = len(frames) > 1
        ids = self._chat_ids(prompt, ("video" if video else "image") if frames else None)
        if not frames:
            return Encoding(token_ids=ids, pixel_values=[])
        height, width = frames[0].shape[:2]
        w, h = self.processor.resize(width, height)
        grid = (math.ceil(len(frames) / TEMPORAL), h // PATCH, w // PATCH)
        pad = self.ids.video_pad if video else self.ids.image_pad
        at = ids.index(pad)
        ids[at : at + 1] = [pad] * (grid[0] * grid[1] * grid[2] // (MERGE * MERGE))
        patches = [self.patches(frames)] if pixel_values else []
        return Encoding(token_ids=ids, pixel_values=patches, grid_thw=[grid], video=video)

    def patches(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """The processor's ``pixel_values`` for these frames as one visual: (patches, 1176) float32."""
        height, width = frames[0].shape[:2]
        w, h = self.processor.resize(width, height)
        stack = np.stack([_resized(f, w, h) for f in frames]).astype(np.float32) / np.float32(255)
        mean = np.asarray(self.processor.mean, dtype=np.float32)
        std = np.asarray(self.processor.std, dtype=np.float32)
        stack = ((stack - mean) / std).transpose(0, 3, 1, 2)  # T, C, H, W
        if pad := -len(stack) % TEMPORAL:
            stack = np.concatenate([stack, np.repeat(stack[-1:], pad, axis=0)])
        t, c = len(stack) // TEMPORAL, stack.shape[1]
        gh, gw = h // PATCH, w // PATCH
        cut = stack.reshape(t, TEMPORAL, c, gh // MERGE, MERGE, PATCH, gw // MERGE, MERGE, PATCH)
        cut = cut.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
        return np.ascontiguousarray(cut.reshape(t * gh * gw, c * TEMPORAL * PATCH * PATCH))

    def decode(self, token_ids: Sequence[int]) -> str:
        text: str = self._tokenizer.decode(list(token_ids), skip_special_tokens=True)
        return text

    @functools.cache  # noqa: B019 - one family per checkpoint
    def ascii_ids(self) -> frozenset[int]:
        size = self._tokenizer.get_vocab_size(with_added_tokens=True)
        return ascii_token_ids(lambda i: self.decode([i]), size, keep=self.eos_ids)

    def _chat_ids(self, prompt: str, visual: str | None) -> list[int]:
        content: list[dict[str, str]] = [{"type": visual}] if visual else []
        content.append({"type": "text", "text": prompt})
        messages: list[dict[str, Any]] = [{"role": "system", "content": self.system}] if self.system else []
        messages.append({"role": "user", "content": content})
        text = self._template.render(messages=messages, add_generation_prompt=True)
        return list(self._tokenizer.encode(text, add_special_tokens=False).ids)


def _resized(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    if frame.shape[:2] == (height, width):
        return frame
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BICUBIC))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read {path}: {exc}; point --model at a Qwen2.5-VL checkpoint folder"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object; point --model at a Qwen2.5-VL checkpoint folder")
    return data


def _processor(folder: Path) -> Processor:
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return Processor()
    config = _read_json(path)
    size = config.get("size") or {}
    return Processor(
        min_pixels=int(config.get("min_pixels") or size.get("shortest_edge") or DEFAULT_MIN_PIXELS),
        max_pixels=int(config.get("max_pixels") or size.get("longest_edge") or DEFAULT_MAX_PIXELS),
        mean=tuple(config.get("image_mean") or DEFAULT_MEAN),
        std=tuple(config.get("image_std") or DEFAULT_STD),
    )


def _load_tokenizer(folder: Path) -> Any:
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise ConfigError(
            f"a Qwen2.5-VL checkpoint needs the tokenizers package ({exc}); "
            "run: pip install 'cosmos-workflow[hf]'"
        ) from exc
    path = folder / "tokenizer.json"
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:
        raise ConfigError(
            f"cannot load tokenizer {path}: {exc}; the Qwen2.5-VL checkpoint is incomplete"
        ) from exc


def _chat_template(folder: Path) -> Any:
    """The checkpoint's chat template, compiled as transformers compiles it (sandboxed, trimmed)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    source = _template_source(folder)
    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    try:
        return environment.from_string(source)
    except Exception as exc:
        raise ConfigError(f"{folder}: the chat template does not compile ({exc})") from exc


def _template_source(folder: Path) -> str:
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    for name in ("chat_template.json", "tokenizer_config.json"):
        if (folder / name).is_file() and isinstance(
            template := _read_json(folder / name).get("chat_template"), str
        ):
            return template
    raise ConfigError(f"{folder} has no chat template (tokenizer_config.json, chat_template.json or .jinja)")


def _eos_ids(folder: Path, config: dict[str, Any]) -> list[int]:
    generation = folder / "generation_config.json"
    eos = _read_json(generation).get("eos_token_id") if generation.is_file() else None
    eos = (
        eos
        if eos is not None
        else config.get("eos_token_id", config.get("text_config", {}).get("eos_token_id"))
    )
    return [int(e) for e in (eos if isinstance(eos, list) else [eos] if eos is not None else [])]
