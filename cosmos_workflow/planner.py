"""Exact token accounting and the resolution/frame planner.

The rule, counted exactly with the model's own tokenizer before any model call::

    image tokens + text tokens + max_tokens <= max_model_len

When the requested resolution and frame count do not fit, the planner lowers the resolution
first (in 16-px steps, never below ``MIN_LONG_SIDE``), then the frame count, and records what it
changed and why. A prompt that cannot fit even without images is an error for that item; nothing
is ever truncated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cosmos_workflow.defaults import MAX_MODEL_LEN, MAX_RESOLUTION, MAX_TOKENS, NUM_FRAMES
from cosmos_workflow.errors import VideoError
from cosmos_workflow.families.pixtral import PATCH, snap_size
from cosmos_workflow.media import FrameSampling

if TYPE_CHECKING:
    from cosmos_workflow.families import Family
    from cosmos_workflow.media import VideoInfo
    from cosmos_workflow.specs.batch import BatchItem

__all__ = ["PATCH", "Plan", "PlanSettings", "plan_item", "probe_item", "requested_long_side", "snap_size"]

MIN_LONG_SIDE = 112
MAX_ASPECT = 16.0

PlanStatus = Literal["ok", "adjusted", "text_only", "overflow", "error"]


class PlanSettings(BaseModel):
    """What the user asked for. Defaults are the seed's and Cosmos-Transfer1's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preprocess: bool = Field(True, description="resize frames to fit; False sends them as stock Cosmos does")
    max_resolution: int | Literal["auto"] = Field(
        MAX_RESOLUTION, description="long side cap in pixels, or 'auto'"
    )
    num_frames: int = Field(NUM_FRAMES, ge=0, le=16)
    frame_sampling: FrameSampling = "first"
    max_tokens: int = Field(MAX_TOKENS, ge=1)
    max_model_len: int = Field(MAX_MODEL_LEN, ge=16)
    max_vision_tokens: int | None = Field(
        None, ge=1, description="cap on the frames' tokens (memory and time); None: only the context"
    )
    system_prompt: str | None = Field(
        None, description="the system prompt every chat starts with (counted in text_tokens); None: none"
    )


class Plan(BaseModel):
    """What will be sent for one item, and whether it fits. Printable data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source_width: int | None = None
    source_height: int | None = None
    width: int | None = None
    height: int | None = None
    frames: int = 0
    frame_indices: list[int] = Field(default_factory=list)
    image_tokens: int = 0
    text_tokens: int = 0
    max_tokens: int
    total_tokens: int = Field(description="prompt tokens: images + text, in the chat format")
    max_model_len: int
    fits: bool
    status: PlanStatus
    message: str = ""
    changes: list[str] = Field(default_factory=list)

    @property
    def headroom(self) -> int:
        return self.max_model_len - self.total_tokens - self.max_tokens

    def shrunk(self, tokenizer: Family, reason: str) -> Plan | None:
        """This plan at three quarters of its long side, same frames (None if it cannot shrink).

        For a request the engine still found too long: the plan shrinks itself; nothing is
        planned again and the video is not probed again.
        """
        if self.width is None or self.height is None or not self.frames:
            return None
        current = max(self.width, self.height)
        step = tokenizer.step
        long_side = max(step, current * 3 // 4 // step * step)
        if long_side >= current:
            return None
        width, height = tokenizer.fitted_size(
            self.source_width or self.width, self.source_height or self.height, long_side
        )
        if max(width, height) >= current:
            return None
        images = tokenizer.vision_tokens(self.frames, width, height)
        changes = [*self.changes, f"resolution {current}->{max(width, height)} px long side: {reason}"]
        return self.model_copy(
            update={
                "width": width,
                "height": height,
                "image_tokens": images,
                "total_tokens": images + self.text_tokens,
                "status": "adjusted",
                "message": "; ".join(changes),
                "changes": changes,
            }
        )


def requested_long_side(width: int, height: int, settings: PlanSettings, max_image_size: int) -> int:
    """The long side before any budget cut: never upscaled, capped, snapped down to the grid."""
    cap = max_image_size if settings.max_resolution == "auto" else settings.max_resolution
    long_side = min(cap, max(width, height), max_image_size)
    return max(PATCH, long_side // PATCH * PATCH)


def plan_item(
    name: str,
    prompt: str,
    video: VideoInfo | None,
    settings: PlanSettings,
    tokenizer: Family,
    *,
    video_problem: str | None = None,
) -> Plan:
    """Plan one request. ``video`` is None for a text-only request (``video_problem`` says why).

    ``tokenizer`` is the checkpoint's model family: every count and size is its arithmetic."""
    text = tokenizer.text_tokens(prompt)
    base: dict[str, Any] = {
        "name": name,
        "text_tokens": text,
        "max_tokens": settings.max_tokens,
        "max_model_len": settings.max_model_len,
    }
    if text + settings.max_tokens > settings.max_model_len:
        return Plan(
            **base, total_tokens=text, fits=False, status="error", message=_text_too_long(text, settings)
        )
    if video is None or settings.num_frames == 0:
        message = video_problem or "no video: the prompt is upsampled from text alone"
        return Plan(**base, total_tokens=text, fits=True, status="text_only", message=message)
    base |= {"source_width": video.width, "source_height": video.height}
    if not settings.preprocess:
        return _plan_stock(base, text, video, settings, tokenizer)
    return _plan_fitted(base, text, video, settings, tokenizer)


def _plan_stock(
    base: dict[str, Any], text: int, video: VideoInfo, settings: PlanSettings, tok: Family
) -> Plan:
    """What stock Cosmos sends: the first frames at full size, only the tokenizer's own cap."""
    frames = min(settings.num_frames, video.frame_count)
    images = tok.vision_tokens(frames, video.width, video.height)
    total = images + text
    fits = total + settings.max_tokens <= settings.max_model_len
    message = "" if fits else _overflow(total, settings)
    return Plan(
        **base,
        width=video.width,
        height=video.height,
        frames=frames,
        frame_indices=list(range(frames)),
        image_tokens=images,
        total_tokens=total,
        fits=fits,
        status="ok" if fits else "overflow",
        message=message,
    )


def _plan_fitted(
    base: dict[str, Any], text: int, video: VideoInfo, settings: PlanSettings, tok: Family
) -> Plan:
    from cosmos_workflow.media import select_frame_indices

    if max(video.width, video.height) > MAX_ASPECT * min(video.width, video.height):
        return Plan(**base, total_tokens=text, fits=False, status="error", message=_extreme_aspect(video))
    wanted_frames = min(settings.num_frames, video.frame_count)
    wanted_long = requested_long_side(video.width, video.height, settings, tok.max_long_side)
    choice = _search(video.width, video.height, wanted_frames, wanted_long, text, settings, tok)
    if choice is None:
        return Plan(
            **base, total_tokens=text, fits=False, status="error", message=_nothing_fits(text, settings)
        )
    frames, (width, height) = choice
    images = tok.vision_tokens(frames, width, height)
    grid_long = max(tok.fitted_size(video.width, video.height, wanted_long))
    changes = _changes(video, settings, wanted_frames, grid_long, frames, max(width, height))
    if grid_long >= wanted_long + tok.step:  # the family's smallest frame is larger than asked
        changes.insert(0, f"resolution {wanted_long}->{grid_long} px long side: the model's smallest frames")
    return Plan(
        **base,
        width=width,
        height=height,
        frames=frames,
        frame_indices=select_frame_indices(video.frame_count, frames, settings.frame_sampling),
        image_tokens=images,
        total_tokens=images + text,
        fits=True,
        status="adjusted" if changes else "ok",
        message="; ".join(changes),
        changes=changes,
    )


def _search(
    width: int, height: int, frames: int, long_side: int, text: int, settings: PlanSettings, tok: Family
) -> tuple[int, tuple[int, int]] | None:
    """Largest resolution at the most frames that fits the context and the vision budget:
    resolution is lowered before frames."""
    limit = settings.max_model_len - settings.max_tokens - text
    if settings.max_vision_tokens is not None:
        limit = min(limit, settings.max_vision_tokens)
    floor = min(long_side, MIN_LONG_SIDE)
    for count in range(frames, 0, -1):
        for size in tok.sizes(width, height, long_side, floor):
            if tok.vision_tokens(count, *size) <= limit:
                return count, size
    return None


def _changes(
    video: VideoInfo,
    settings: PlanSettings,
    wanted_frames: int,
    wanted_long: int,
    frames: int,
    long_side: int,
) -> list[str]:
    changes = []
    if wanted_frames < settings.num_frames:
        changes.append(
            f"frames {settings.num_frames}->{wanted_frames}: the video has only {video.frame_count}"
        )
    if long_side < wanted_long:
        changes.append(
            f"resolution {wanted_long}->{long_side} px long side to fit "
            f"{settings.max_model_len} tokens with {settings.max_tokens} reserved"
            + (f" and {settings.max_vision_tokens} vision tokens" if settings.max_vision_tokens else "")
        )
    if frames < wanted_frames:
        changes.append(
            f"frames {wanted_frames}->{frames}: {wanted_frames} frames do not fit even at "
            f"{min(wanted_long, MIN_LONG_SIDE)} px"
        )
    return changes


def _text_too_long(text: int, settings: PlanSettings) -> str:
    return (
        f"prompt is {text} tokens; with {settings.max_tokens} reserved for the answer it exceeds "
        f"max_model_len {settings.max_model_len}; shorten the prompt, lower --max-tokens or raise "
        "--max-model-len"
    )


def _nothing_fits(text: int, settings: PlanSettings) -> str:
    return (
        f"prompt of {text} tokens leaves no room for even one frame at {MIN_LONG_SIDE} px within "
        f"max_model_len {settings.max_model_len} ({settings.max_tokens} reserved); shorten the prompt, "
        "lower --max-tokens or raise --max-model-len"
    )


def _overflow(total: int, settings: PlanSettings) -> str:
    needed = total + settings.max_tokens
    return (
        f"overflow: prompt of {total} tokens + {settings.max_tokens} reserved = {needed} > "
        f"max_model_len {settings.max_model_len}; drop --no-preprocess or pass --max-resolution 480"
    )


def _extreme_aspect(video: VideoInfo) -> str:
    ratio = max(video.width, video.height) / max(1, min(video.width, video.height))
    return (
        f"video {video.path.name} is {video.width}x{video.height} (aspect {ratio:.0f}:1), beyond the "
        f"{MAX_ASPECT:.0f}:1 the planner accepts; crop it to a usual aspect ratio"
    )


def probe_item(item: BatchItem) -> tuple[VideoInfo | None, str | None]:
    """The item's video, or why it has none usable (the item is then upsampled from text alone)."""
    from cosmos_workflow.media import probe_video

    if item.video_path is None:
        return None, None
    try:
        return probe_video(item.video_path), None
    except VideoError as exc:
        return None, f"{str(exc).rstrip('. ')}; upsampling from the text alone"
