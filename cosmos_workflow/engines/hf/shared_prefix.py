"""One prefill of the images that several requests of a batch share (``share_prefix``).

Requests on the same video with different prompts (prompt variants; a spec's several prompts for
one clip; the benchmarks' 64 requests per clip) begin with the same tokens up to their last image:
BOS, ``[INST]``, the system prompt and the images' token runs, from the same pixels. Their keys and
values there are the same (the same tokens at the same positions), so the prefill computes them
once per distinct prefix, copies them into the KV-cache rows of every request that has it, and
then runs only the text after the images for each request. For Pixtral at two 480x272 frames the
prefix is about 1,000 of a request's 1,090 prompt tokens. vLLM gets the same effect from its
prefix cache.

A batch row is laid out as ``[padding][its prefix][padding][its text]``: prefixes end at the same
slot, texts at the last slot. Positions are counted over the attention mask (as for left padding),
so the model sees each request as it would alone. A request without images shares its first
token (BOS) only.

Pure: tested without a model (the grouping) and against the unshared path with the tiny model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from cosmos_workflow.engines.base import EncodedRequest
from cosmos_workflow.engines.hf.batch import hf_batch_tensors, on_device

if TYPE_CHECKING:
    import torch

#: one value in this many of a request's images goes into its grouping key (a prime: no period of
#: a row or a colour channel lines up with it)
SAMPLE_STRIDE = 997


@dataclass(frozen=True)
class PrefixGroups:
    """Which requests of a batch share a prefix: ``group[i]`` indexes the prefix of request ``i``
    in ``leaders`` (the first request that has it); ``split[i]`` is where request ``i``'s text
    after its images starts."""

    group: tuple[int, ...]
    leaders: tuple[int, ...]
    split: tuple[int, ...]

    @property
    def shared_tokens(self) -> int:
        """Prompt tokens the shared prefill does not compute (each prefix once, not per request)."""
        return sum(self.split) - sum(self.split[i] for i in self.leaders)


@dataclass(frozen=True)
class SharedBatch:
    """The tensors of a shared prefill. ``prefix``: the distinct prefixes (left-padded ids, mask,
    their images), one row each; ``rows``: (batch,) the prefix row of each request; ``text``:
    (batch, T) each request's ids after its images, left-padded; ``attention_mask``: (batch, P + T),
    the whole batch's prompt mask in the layout above."""

    prefix: dict[str, torch.Tensor]
    rows: torch.Tensor
    text: torch.Tensor
    attention_mask: torch.Tensor

    @property
    def prefix_width(self) -> int:
        """The prefixes' padded length (P): where the texts start in ``attention_mask``."""
        return int(self.prefix["attention_mask"].shape[1])

    def to(self, device: Any, dtype: Any) -> SharedBatch:
        return SharedBatch(
            on_device(self.prefix, device, dtype),
            self.rows.to(device),
            self.text.to(device),
            self.attention_mask.to(device),
        )


def prefix_end(token_ids: Sequence[int], image_end_id: int) -> int:
    """Where the text after a request's images starts: after its last ``[IMG_END]``; 1 (after BOS)
    when it has no image."""
    ids = list(token_ids)
    if image_end_id not in ids:
        return 1
    return len(ids) - ids[::-1].index(image_end_id)


def group_prefixes(requests: Sequence[EncodedRequest], image_end_id: int) -> PrefixGroups | None:
    """The requests' shared prefixes: equal tokens up to their last image and equal pixels; None
    when no two requests share one (the plain prefill is then the same work, with less copying)."""
    split = tuple(prefix_end(r.token_ids, image_end_id) for r in requests)
    if any(at >= r.num_tokens for at, r in zip(split, requests, strict=True)):
        return None  # no text after the images: nothing would be left to prefill for it
    leaders: list[int] = []
    group: list[int] = []
    by_key: dict[tuple[object, ...], list[int]] = {}
    for index, request in enumerate(requests):
        key = (tuple(request.token_ids[: split[index]]), _sample(request))
        candidates = by_key.setdefault(key, [])
        match = next((g for g in candidates if _same_images(requests[leaders[g]], request)), None)
        if match is None:
            match = len(leaders)
            leaders.append(index)
            candidates.append(match)
        group.append(match)
    if len(leaders) == len(requests):
        return None
    return PrefixGroups(group=tuple(group), leaders=tuple(leaders), split=split)


def _sample(request: EncodedRequest) -> tuple[object, ...]:
    """A cheap key of a request's images (their shapes and every :data:`SAMPLE_STRIDE`-th value):
    only requests with equal samples are compared in full, so a batch of distinct videos costs
    no whole-image comparisons (requests whose frames the runner shared hold the same arrays, and
    skip the comparison too)."""
    return tuple(
        (a.shape, np.ascontiguousarray(a).ravel()[::SAMPLE_STRIDE].tobytes()) for a in request.pixel_values
    )


def _same_images(a: EncodedRequest, b: EncodedRequest) -> bool:
    """Equal images (the same arrays where the runner shared one video's frames: no comparison)."""
    return len(a.pixel_values) == len(b.pixel_values) and all(
        x is y or np.array_equal(x, y) for x, y in zip(a.pixel_values, b.pixel_values, strict=True)
    )


def shared_batch_tensors(
    requests: Sequence[EncodedRequest], groups: PrefixGroups, pad_id: int, *, bucket: int = 1
) -> SharedBatch:
    """The tensors of ``requests``' shared prefill (CPU; :meth:`SharedBatch.to` moves them)."""
    import torch

    prefixes = [_head(requests[i], groups.split[i]) for i in groups.leaders]
    prefix = hf_batch_tensors(prefixes, pad_id, bucket=bucket)
    texts = [_tail(r, groups.split[i]) for i, r in enumerate(requests)]
    text = hf_batch_tensors(texts, pad_id, bucket=bucket)
    rows = torch.tensor(groups.group, dtype=torch.long)
    mask = torch.cat([prefix["attention_mask"][rows], text["attention_mask"]], dim=1)
    return SharedBatch(prefix=prefix, rows=rows, text=text["input_ids"], attention_mask=mask)


def _head(request: EncodedRequest, split: int) -> EncodedRequest:
    return replace(request, token_ids=list(request.token_ids[:split]))


def _tail(request: EncodedRequest, split: int) -> EncodedRequest:
    return replace(request, token_ids=list(request.token_ids[split:]), pixel_values=(), frames=())
