"""The hf engine for Qwen2.5-VL checkpoints (Cosmos-Reason1-7B): plain batched transformers ``generate``.

Requests come encoded by the Qwen2.5-VL family: token ids with the vision pads already
repeated, the processor's patches (patches x 1176) and each visual's (t, h, w) grid. A batch is
left-padded; the images' patches are concatenated into ``pixel_values`` / ``image_grid_thw`` and
the videos' into ``pixel_values_videos`` / ``video_grid_thw``, in request order (the model
assigns them to the pad tokens in that order). None of the Pixtral path's speed work (compiled
prefill, flex decode) applies here: this is transformers' own ``generate``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cosmos_workflow.engines.base import EncodedRequest, EngineConfig, Generation, SamplingParams
from cosmos_workflow.engines.hf.ascii import ascii_logits_processor
from cosmos_workflow.engines.hf.common import HFBase
from cosmos_workflow.engines.hf.device import (
    free_cuda,
    is_out_of_memory,
    load_pretrained,
    pick_device,
    release_failed_call,
)
from cosmos_workflow.errors import EngineError, GPUOutOfMemoryError, ModelLoadError
from cosmos_workflow.families.qwen2_5_vl import TEMPORAL, Qwen25VLFamily

logger = logging.getLogger("cosmos_workflow")

#: the hf engine options the Qwen2.5-VL path reads (the benchmarks' switch to answer to max_tokens)
QWEN_OPTIONS = frozenset({"ignore_eos"})


class HFQwenEngine(HFBase):
    """A loaded ``Qwen2_5_VLForConditionalGeneration``; one ``generate`` call per batch."""

    def __init__(self, config: EngineConfig, *, model: Any, checkpoint: Path) -> None:
        super().__init__(config)
        self._model: Any = model
        self.checkpoint = checkpoint
        self.family = Qwen25VLFamily(checkpoint)
        self.pad_id = _pad_id(model)

    @property
    def device(self) -> Any:
        return self._model.device

    def generate(self, requests: Sequence[EncodedRequest], sampling: SamplingParams) -> list[Generation]:
        self._require_open()
        if not requests:
            return []
        import torch

        inputs = self._batch(requests, torch)
        try:
            with torch.inference_mode():
                if sampling.seed is not None:
                    torch.manual_seed(sampling.seed)
                out = self._model.generate(**inputs, **self._generation_kwargs(sampling))
        except Exception as exc:
            if is_out_of_memory(exc, torch):
                release_failed_call(exc, torch)
                raise GPUOutOfMemoryError(
                    f"a batch of {len(requests)} Qwen2.5-VL requests does not fit in {self.device} memory; "
                    "lower --batch-size or --max-vision-tokens"
                ) from exc
            raise EngineError(f"Qwen2.5-VL generate failed: {type(exc).__name__}: {exc}") from exc
        width = inputs["input_ids"].shape[1]
        return [self._answer(r, row[width:].tolist()) for r, row in zip(requests, out, strict=True)]

    def _generation_kwargs(self, sampling: SamplingParams) -> dict[str, Any]:
        ignore_eos = bool(self.config.options.get("ignore_eos"))
        kwargs = _generation_kwargs(sampling, self.pad_id, ignore_eos=ignore_eos)
        if sampling.ascii_only:
            vocab = self._model.config.get_text_config().vocab_size
            kwargs |= ascii_logits_processor(self.family.ascii_ids(), vocab, self.device)
        return kwargs

    def _batch(self, requests: Sequence[EncodedRequest], torch: Any) -> dict[str, Any]:
        """Left-padded ids and mask, and the visuals split into images and videos, in order."""
        longest = max(r.num_tokens for r in requests)
        ids = torch.full((len(requests), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(requests), longest), dtype=torch.long)
        for row, request in enumerate(requests):
            ids[row, longest - request.num_tokens :] = torch.tensor(list(request.token_ids), dtype=torch.long)
            mask[row, longest - request.num_tokens :] = 1
        batch: dict[str, Any] = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
        for video, (pixels, grids) in (
            (False, ("pixel_values", "image_grid_thw")),
            (True, ("pixel_values_videos", "video_grid_thw")),
        ):
            chosen = [r for r in requests if r.pixel_values and r.video == video]
            if chosen:
                patches = np.concatenate([p for r in chosen for p in r.pixel_values])
                grid = [list(g) for r in chosen for g in r.grid_thw]
                batch[pixels] = torch.from_numpy(patches).to(self.device, self._model.dtype)
                batch[grids] = torch.tensor(grid, dtype=torch.long, device=self.device)
        videos = [r for r in requests if r.pixel_values and r.video]
        if videos:  # seconds per temporal patch (the processor's temporal_patch_size / fps); 1 if unknown
            seconds = [TEMPORAL * r.frame_interval if r.frame_interval else 1.0 for r in videos]
            batch["second_per_grid_ts"] = torch.tensor(seconds, dtype=torch.float32, device=self.device)
        return batch

    def _answer(self, request: EncodedRequest, new: list[int]) -> Generation:
        eos = set(self.family.eos_ids)
        end = next((i for i, token in enumerate(new) if token in eos), None)
        answer = new if end is None else new[:end]
        return Generation(
            text=self.family.decode(answer).strip(),
            finish_reason="length" if end is None else "stop",
            prompt_tokens=request.num_tokens,
            completion_tokens=len(answer),
        )

    def close(self) -> None:
        if self._model is None:
            return
        self._model = None
        import torch

        free_cuda(torch)

    def _require_open(self) -> None:
        if self._model is None:
            raise EngineError("the engine is closed")


def _generation_kwargs(sampling: SamplingParams, pad_id: int, *, ignore_eos: bool = False) -> dict[str, Any]:
    greedy = sampling.temperature == 0
    kwargs: dict[str, Any] = {
        "max_new_tokens": sampling.max_tokens,
        "do_sample": not greedy,
        "pad_token_id": pad_id,
    }
    if not greedy:
        kwargs |= {"temperature": sampling.temperature, "top_p": sampling.top_p}
    if ignore_eos:  # benchmarks: every answer runs to max_tokens (random weights stop anywhere)
        kwargs["min_new_tokens"] = sampling.max_tokens
    return kwargs


def _pad_id(model: Any) -> int:
    pad = model.generation_config.pad_token_id
    if pad is None:
        pad = getattr(model.config.get_text_config(), "pad_token_id", None)
    return int(pad if pad is not None else 0)


def load_qwen(config: EngineConfig, checkpoint: Path) -> HFQwenEngine:
    """Load a Qwen2.5-VL checkpoint folder on the chosen device (bf16 on CUDA, fp32 on the CPU)."""
    try:
        import torch
        from transformers import Qwen2_5_VLForConditionalGeneration
    except ImportError as exc:
        raise ModelLoadError(f"the hf engine needs torch and transformers ({exc})") from exc
    device = pick_device(config.device)
    qwen = Qwen2_5_VLForConditionalGeneration
    model = load_pretrained(qwen, checkpoint, device, torch, kind="Qwen2.5-VL")
    if unused := sorted(set(config.options) - QWEN_OPTIONS):
        logger.warning(
            "hf engine: the speed options %s are for Pixtral checkpoints; Qwen2.5-VL runs transformers' "
            "own generate without them",
            ", ".join(unused),
        )
    logger.info(
        "hf engine (Qwen2.5-VL, transformers generate): %s on %s (%s)", checkpoint, device, model.dtype
    )
    return HFQwenEngine(config, model=model, checkpoint=checkpoint)
