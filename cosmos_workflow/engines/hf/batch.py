"""Batch packing for ``generate`` (pure: tested without a model)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cosmos_workflow.engines.base import EncodedRequest

#: Pixtral's padding token id (tekken_240911.json).
PAD_ID = 11


def hf_batch_tensors(
    requests: Sequence[EncodedRequest], pad_id: int = PAD_ID, *, bucket: int = 1
) -> dict[str, Any]:
    """Pack requests into ``generate`` inputs: left-padded ids and mask, plus the batch's images.

    ``input_ids``/``attention_mask`` are (B, L) int64 with L rounded up to a multiple of
    ``bucket``. When any request has images, ``pixel_values`` is (N, 3, H, W) float32 holding
    every image in request then frame order, zero-padded to the largest H and W, and
    ``image_sizes`` is (N, 2) int64 of each image's real (height, width).
    """
    import torch

    if not requests:
        raise ValueError("hf_batch_tensors needs at least one request")
    length = round_up(max(r.num_tokens for r in requests), bucket)
    ids = torch.full((len(requests), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(requests), length), dtype=torch.long)
    for row, request in enumerate(requests):
        n = request.num_tokens
        ids[row, length - n :] = torch.tensor(list(request.token_ids), dtype=torch.long)
        mask[row, length - n :] = 1
    batch: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
    images = [np.asarray(image, dtype=np.float32) for r in requests for image in r.pixel_values]
    if images:
        batch.update(_pack_images(images))
    return batch


def on_device(tensors: dict[str, Any], device: Any, dtype: Any) -> dict[str, Any]:
    """Packed tensors moved to ``device``; the images also to the model's ``dtype``."""
    moved = {name: tensor.to(device) for name, tensor in tensors.items()}
    if "pixel_values" in moved:
        moved["pixel_values"] = moved["pixel_values"].to(dtype)
    return moved


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _pack_images(images: Sequence[np.ndarray]) -> dict[str, Any]:
    import torch

    height = max(image.shape[1] for image in images)
    width = max(image.shape[2] for image in images)
    pixels = torch.zeros((len(images), 3, height, width), dtype=torch.float32)
    for index, image in enumerate(images):
        pixels[index, :, : image.shape[1], : image.shape[2]] = torch.from_numpy(image)
    sizes = torch.tensor([[image.shape[1], image.shape[2]] for image in images], dtype=torch.long)
    return {"pixel_values": pixels, "image_sizes": sizes}
