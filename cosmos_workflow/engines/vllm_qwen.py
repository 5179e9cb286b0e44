"""Qwen2.5-VL requests for the vLLM engine (Cosmos-Reason1-7B): one vision pad per visual, vLLM expands it.

The family encodes a request with its vision pad already repeated (``grid.prod() / 4`` times), as
transformers' processor does. vLLM does not take a token prompt whose pads are already expanded:
for a token prompt it never reports the prompt updates as applied (0.8.1
``vllm/multimodal/processing.py`` and 0.26.0 ``vllm/multimodal/processing/processor.py``,
``_apply_hf_processor_main``: the ``list[int]`` branch returns ``False``; 0.33.0's
``_maybe_apply_prompt_updates`` always calls ``_apply_prompt_updates``), and Qwen2-VL's
``_get_prompt_updates`` (``vllm/model_executor/models/qwen2_vl.py``, and
``qwen2_5_vl.py`` from 0.26.0) is a ``PromptReplacement`` of ONE ``<|image_pad|>`` /
``<|video_pad|>`` by ``grid_thw.prod() // merge_size**2`` of them. An expanded run would match
its first pad only, and the prompt would grow. So each visual's run of pads is collapsed to one
pad, and vLLM's expansion gives back exactly the planned count, provided its processor makes the
same grid as the family:

- the frames go in at the planned size, a multiple of 28 inside [min_pixels, max_pixels] already,
  and the processor is given the family's own pixel limits (``mm_processor_kwargs={"size":
  {"shortest_edge": min_pixels, "longest_edge": max_pixels}}``, read by transformers' image and
  video processors and by vLLM's own ``Qwen2VLProcessingInfo._get_vision_info``), so its
  ``smart_resize`` keeps the frames as they are: the video processor's own defaults (128 to 768
  merged patches) would otherwise shrink a frame the image limits allow;
- one frame is an image, two or more one video (``numpy`` T x H x W x 3); the video processor
  pads an odd count by repeating the last frame, as the family counts (temporal patch 2);
- a video goes with its metadata (0.33.0's Qwen2.5-VL parser requires it; 0.26.0 accepts it),
  every frame kept (``do_sample_frames`` False) and the clip's fps, which only places frames in
  time (M-RoPE), never changes the count. vLLM 0.8.1 takes a bare array (no metadata).

``tests/integration/test_family_qwen.py`` checks the arithmetic against transformers' processors
on every planned shape; ``tests/unit/test_engine_vllm_contract.py`` checks the vLLM names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cosmos_workflow.engines.base import EncodedRequest
from cosmos_workflow.families.qwen2_5_vl import Processor, VisionIds

#: the modalities a Qwen2.5-VL request uses, one item at most each (``limit_mm_per_prompt``)
MODALITIES_USED = frozenset({"image", "video"})
#: keys of ``mm_processor_kwargs`` (the processor's pixel limits, as transformers names them)
MM_PROCESSOR_KWARGS_USED = frozenset({"size"})
SIZE_KEYS_USED = frozenset({"shortest_edge", "longest_edge"})
#: keys of a video's metadata dict (transformers' ``VideoMetadata`` fields, and vLLM's own flag)
VIDEO_METADATA_KEYS_USED = frozenset(
    {"fps", "duration", "total_num_frames", "frames_indices", "video_backend", "do_sample_frames"}
)
#: the fps reported when the clip's is unknown (the processor's default)
DEFAULT_FPS = 2.0


def llm_kwargs(processor: Processor) -> dict[str, Any]:
    """``vllm.LLM`` arguments for a Qwen2.5-VL checkpoint: one image or one video per prompt, and
    the processor held to the family's pixel limits."""
    size = {"shortest_edge": processor.min_pixels, "longest_edge": processor.max_pixels}
    return {
        "limit_mm_per_prompt": dict.fromkeys(sorted(MODALITIES_USED), 1),
        "mm_processor_kwargs": {"size": size},
    }


def collapse_vision_pads(ids: Sequence[int], vision: VisionIds) -> list[int]:
    """Each run of ``<|image_pad|>`` or ``<|video_pad|>`` replaced by one pad of its kind."""
    pads = (vision.image_pad, vision.video_pad)
    out: list[int] = []
    for token in ids:
        if token in pads and out and out[-1] == token:
            continue
        out.append(token)
    return out


def multi_modal_data(request: EncodedRequest, *, video_metadata: bool) -> dict[str, Any]:
    """vLLM's ``multi_modal_data`` for the request's frames: one image, or one video (frames
    stacked, with its metadata where the installed vLLM takes it); empty for a text-only request."""
    frames = list(request.frames)
    if not frames:
        return {}
    if len(frames) == 1:
        from PIL import Image

        return {"image": Image.fromarray(frames[0])}
    return {"video": video_item(frames, request.frame_interval, video_metadata=video_metadata)}


def video_item(frames: Sequence[np.ndarray], interval: float | None, *, video_metadata: bool) -> Any:
    """One video for ``multi_modal_data``: the frames stacked (T x H x W x 3 uint8), with their
    metadata when ``video_metadata`` (``interval``: seconds between frames, None if unknown)."""
    video = np.stack(list(frames))
    return (video, _metadata(len(video), interval)) if video_metadata else video


def _metadata(count: int, interval: float | None) -> dict[str, Any]:
    fps = 1.0 / interval if interval else DEFAULT_FPS
    metadata = {
        "fps": fps,
        "duration": count / fps,
        "total_num_frames": count,
        "frames_indices": list(range(count)),
        "video_backend": "opencv",
        "do_sample_frames": False,
    }
    assert set(metadata) == VIDEO_METADATA_KEYS_USED
    return metadata


def takes_video_metadata() -> bool:
    """Whether the installed vLLM takes a video as ``(frames, metadata)``: its data parser has
    ``_get_video_with_metadata`` (0.26.0, 0.33.0; not 0.8.1)."""
    try:
        from vllm.multimodal.parse import MultiModalDataParser
    except ImportError:
        return False
    return hasattr(MultiModalDataParser, "_get_video_with_metadata")
