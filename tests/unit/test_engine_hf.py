"""Batch packing and option parsing of the transformers engine, without a model."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from cosmos_workflow.engines.base import EncodedRequest, EngineConfig
from cosmos_workflow.engines.hf import PAD_ID, HFOptions, hf_batch_tensors, load
from cosmos_workflow.errors import ConfigError, ModelLoadError


def _request(key: str, token_ids: list[int], image_shapes: Sequence[tuple[int, int]] = ()) -> EncodedRequest:
    pixels = [np.full((3, h, w), i + 1, dtype=np.float32) for i, (h, w) in enumerate(image_shapes)]
    return EncodedRequest(key=key, prompt=key, token_ids=token_ids, pixel_values=pixels)


def test_ids_are_left_padded_with_a_mask() -> None:
    batch = hf_batch_tensors([_request("a", [1, 5, 6]), _request("b", [1, 7, 8, 9, 4])], PAD_ID)

    assert batch["input_ids"].tolist() == [[PAD_ID, PAD_ID, 1, 5, 6], [1, 7, 8, 9, 4]]
    assert batch["attention_mask"].tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert batch["input_ids"].dtype == torch.long
    assert "pixel_values" not in batch
    assert "image_sizes" not in batch


def test_length_is_rounded_up_to_the_bucket() -> None:
    batch = hf_batch_tensors([_request("a", [1, 2, 3]), _request("b", list(range(70)))], PAD_ID, bucket=64)

    assert batch["input_ids"].shape == (2, 128)
    assert batch["attention_mask"].sum(dim=1).tolist() == [3, 70]
    assert batch["input_ids"][0, -3:].tolist() == [1, 2, 3]


def test_images_of_different_sizes_are_zero_padded_in_request_order() -> None:
    first = _request("a", [1, 10, 10], [(32, 48), (16, 16)])
    second = _request("b", [1, 10], [(64, 16)])

    batch = hf_batch_tensors([first, second], PAD_ID)

    pixels = batch["pixel_values"]
    assert pixels.shape == (3, 3, 64, 48)
    assert pixels.dtype == torch.float32
    assert batch["image_sizes"].tolist() == [[32, 48], [16, 16], [64, 16]]
    assert torch.all(pixels[0, :, :32, :48] == 1) and torch.all(pixels[0, :, 32:, :] == 0)
    assert torch.all(pixels[1, :, :16, :16] == 2) and pixels[1].sum() == 2 * 3 * 16 * 16
    assert torch.all(pixels[2, :, :64, :16] == 1) and torch.all(pixels[2, :, :, 16:] == 0)


def test_text_only_requests_beside_image_requests_contribute_no_images() -> None:
    batch = hf_batch_tensors(
        [_request("text", [1, 3, 4]), _request("img", [1, 10], [(16, 32)]), _request("t2", [1])], PAD_ID
    )

    assert batch["image_sizes"].tolist() == [[16, 32]]
    assert batch["pixel_values"].shape == (1, 3, 16, 32)
    assert batch["input_ids"].shape == (3, 3)


def test_an_empty_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one request"):
        hf_batch_tensors([], PAD_ID)


def test_options_default_by_device() -> None:
    assert HFOptions.parse({}, cuda=True) == HFOptions(
        static_cache=True,
        batch_bucket=16,
        decode_attention="flex",
        decode_loop=True,
        fuse_prefill="inductor",
        pad_rows=True,
        decode_step="layers",
    )
    assert HFOptions.parse({}, cuda=False) == HFOptions(static_cache=False, batch_bucket=1)


def test_options_accept_strings_from_the_command_line() -> None:
    options = HFOptions.parse({"static_cache": "true", "batch_bucket": "32"}, cuda=False)

    assert options == HFOptions(static_cache=True, batch_bucket=32, decode_loop=True)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"static_cache": "maybe"}, "static_cache='maybe' is not a boolean"),
        ({"batch_bucket": "wide"}, "batch_bucket='wide' is not an integer"),
        ({"batch_bucket": 0}, "batch_bucket=0 must be at least 1"),
    ],
)
def test_bad_options_say_what_to_pass(options: dict[str, str | int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HFOptions.parse(options, cuda=False)


def test_missing_transformers_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail

    with pytest.raises(ModelLoadError, match=r"pip install 'cosmos-workflow\[hf\]'"):
        load(EngineConfig(model=str(checkpoint)))
