"""The grouping and layout of a shared prefill (engines/hf/shared_prefix.py), without a model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cosmos_workflow.engines.base import EncodedRequest
from cosmos_workflow.engines.hf.shared_prefix import group_prefixes, prefix_end, shared_batch_tensors

BOS, INST, END_INST, IMG, BREAK, END, PAD = 1, 3, 4, 10, 12, 13, 11
A = np.full((3, 2, 2), 0.5, dtype=np.float32)
B = np.full((3, 2, 2), -0.5, dtype=np.float32)


def request(key: str, text: list[int], images: list[np.ndarray]) -> EncodedRequest:
    runs = [t for _ in images for t in (IMG, IMG, BREAK, IMG, IMG, END)]
    return EncodedRequest(
        key=key, prompt=key, token_ids=[BOS, INST, *runs, *text, END_INST], pixel_values=[*images]
    )


def test_a_prefix_ends_after_the_last_image_or_after_bos() -> None:
    assert prefix_end(request("x", [50, 51], [A, A]).token_ids, END) == 2 + 12
    assert prefix_end(request("x", [50, 51], []).token_ids, END) == 1


def test_requests_with_the_same_tokens_and_pixels_share_a_prefix() -> None:
    batch = [
        request("a1", [50], [A]),
        request("b1", [51, 52], [B]),  # the same tokens as a's images, other pixels
        request("a2", [53, 54, 55], [A]),
        request("two", [56], [A, A]),  # more images: another prefix
        request("t1", [57], []),
        request("t2", [58, 59], []),  # text only: BOS is shared
    ]
    groups = group_prefixes(batch, END)
    assert groups is not None
    assert groups.group == (0, 1, 0, 2, 3, 3)
    assert groups.leaders == (0, 1, 3, 4)
    assert groups.shared_tokens == 8 + 1  # a2's prefix of 8 tokens, t2's BOS


def test_nothing_shared_or_nothing_after_the_images_means_no_shared_prefill() -> None:
    assert group_prefixes([request("a", [50], [A]), request("b", [50], [B])], END) is None
    bare = EncodedRequest(key="x", prompt="x", token_ids=[BOS, INST, IMG, END], pixel_values=[A])
    assert group_prefixes([bare, bare], END) is None


def test_the_layout_gives_each_request_its_own_tokens_at_its_own_positions() -> None:
    batch = [
        request("a1", [50], [A]),
        request("t1", [57, 58, 59, 60], []),
        request("a2", [53, 54, 55], [A]),
    ]
    groups = group_prefixes(batch, END)
    assert groups is not None
    shared = shared_batch_tensors(batch, groups, PAD, bucket=4)
    assert shared.prefix["input_ids"].shape == (2, 8)  # two prefixes, bucketed to 4
    assert shared.rows.tolist() == [0, 1, 0]
    assert shared.prefix["pixel_values"].shape[0] == 1  # a's image once
    whole = torch.cat([shared.prefix["input_ids"][shared.rows], shared.text], dim=1)
    mask = shared.attention_mask.bool()
    positions = shared.attention_mask.cumsum(-1) - 1
    for row, request_ in enumerate(batch):
        assert whole[row][mask[row]].tolist() == list(request_.token_ids)
        assert positions[row][mask[row]].tolist() == list(range(request_.num_tokens))


@pytest.mark.parametrize(("heads", "fold"), [(4, 1), (4, 2), (8, 4)], ids=["unfolded", "fold-2", "fold-4"])
def test_a_cascade_step_equals_attention_over_the_whole_cache(heads: int, fold: int) -> None:
    """Queries of 5 requests in 2 groups of 2 and 3 (prefixes of 3 and 6 slots, left-padded to 8),
    ``heads`` query heads over 2 KV heads: the prefix part (once per group) merged with each
    request's own slots equals softmax attention over every slot the request may see, also with
    the query heads of a KV head folded into its query rows (``fold_heads``: the padded groups of
    M rows then hold ``fold`` query heads' rows per KV head, M rounded to 128 / fold)."""
    from torch.nn.attention.flex_attention import flex_attention

    from cosmos_workflow.engines.hf.flex_decode import filled_block_mask
    from cosmos_workflow.engines.hf.prefix_attention import QUERY_BUCKET, cascade_attention, prefix_layers

    torch.manual_seed(0)
    rows = torch.tensor([0, 1, 0, 1, 1])
    prefix_allowed = torch.tensor([[0] * 5 + [1] * 3, [0] * 2 + [1] * 6], dtype=torch.bool)
    prefix_keys, prefix_values = torch.randn(2, 2, 8, 16), torch.randn(2, 2, 8, 16)
    length = 8 + 6
    keys, values = torch.randn(5, 2, length, 16), torch.randn(5, 2, length, 16)
    keys[:, :, :8], values[:, :, :8] = prefix_keys[rows], prefix_values[rows]  # as the prefill copies them
    own = torch.zeros(5, length, dtype=torch.bool)
    for row, filled in enumerate([2, 6, 4, 1, 3]):
        own[row, length - filled :] = True
    query = torch.randn(5, heads, 1, 16)
    [layer] = prefix_layers([prefix_keys], [prefix_values], prefix_allowed, rows, fold=fold)

    result = cascade_attention(
        query, keys, values, filled_block_mask(own), layer, scaling=0.25, flex=flex_attention
    )

    assert layer.fold == fold
    assert tuple(layer.members.shape) == (4, QUERY_BUCKET // fold)  # groups rounded to 4; rows padded
    assert layer.mask.shape[2] == QUERY_BUCKET  # a KV head's query rows: one whole block
    seen = own.clone()
    seen[:, :8] = prefix_allowed[rows]
    expected = torch.nn.functional.scaled_dot_product_attention(
        query, keys, values, attn_mask=seen[:, None, None, :], scale=0.25, enable_gqa=True
    )
    torch.testing.assert_close(result, expected.transpose(1, 2))
    [unfolded] = prefix_layers([prefix_keys], [prefix_values], prefix_allowed, rows)
    plain = cascade_attention(
        query, keys, values, filled_block_mask(own), unfolded, scaling=0.25, flex=flex_attention
    )
    torch.testing.assert_close(result, plain)


@pytest.mark.parametrize(("fold", "members"), [(1, 128), (2, 64), (4, 64), (3, 128)])
def test_folded_query_rows_are_rounded_to_whole_blocks_per_kv_head(fold: int, members: int) -> None:
    """A group of 33 requests and one of 3: queries per group are rounded up to a multiple of
    128 / fold (32 for 4 query heads per KV head: 64 for 33), so that a KV head's ``fold * M``
    query rows are whole 128-row blocks (3 heads a KV head: 128 requests, 384 rows)."""
    from cosmos_workflow.engines.hf.prefix_attention import QUERY_BUCKET, prefix_layers, query_bucket

    rows = torch.tensor([0] * 33 + [1] * 3)
    allowed = torch.ones(2, 8, dtype=torch.bool)
    keys = torch.zeros(2, 2, 8, 16)
    [layer] = prefix_layers([keys], [keys], allowed, rows, fold=fold)

    assert tuple(layer.members.shape) == (4, members)
    assert members % query_bucket(fold) == 0
    assert layer.mask.shape[2] == fold * members and layer.mask.shape[2] % QUERY_BUCKET == 0
    assert query_bucket(4) == 32 and query_bucket(1) == QUERY_BUCKET


@pytest.mark.parametrize("mask_kind", ["bool", "additive", "none"])
def test_a_cascade_prefill_equals_attention_over_prefix_and_text(
    mask_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The texts' prefill with the prefixes in a cache of their own: 5 requests in 2 groups, 3 text
    queries each over 4 own slots (left padding, causal), 4 query heads over 2 KV heads, gathered
    2 requests at a time: one softmax over the group's filled prefix slots and the request's own."""
    from cosmos_workflow.engines.hf import prefix_attention
    from cosmos_workflow.engines.hf.prefix_attention import cascade_prefill, prefix_layers

    monkeypatch.setattr(prefix_attention, "PREFILL_ROWS", 2)
    torch.manual_seed(1)
    rows = torch.tensor([1, 0, 0, 1, 1])
    prefix_allowed = torch.tensor([[0] * 5 + [1] * 3, [0] * 2 + [1] * 6], dtype=torch.bool)
    prefix_keys, prefix_values = torch.randn(2, 2, 8, 16), torch.randn(2, 2, 8, 16)
    keys, values = torch.randn(5, 2, 4, 16), torch.randn(5, 2, 4, 16)
    causal = torch.ones(3, 4, dtype=torch.bool).tril()
    own = causal.expand(5, 1, 3, 4).clone()
    if mask_kind != "none":
        own[1, :, :, 0] = own[3, :, :, :2] = False  # left padding
    mask = {"bool": own, "additive": torch.where(own, 0.0, float("-inf")), "none": None}[mask_kind]
    query = torch.randn(5, 4, 3, 16)
    [layer] = prefix_layers([prefix_keys], [prefix_values], prefix_allowed, rows)

    result = cascade_prefill(query, keys, values, mask, layer, scaling=0.25)

    whole_keys = torch.cat([layer.keys[rows], keys], dim=2)
    whole_values = torch.cat([layer.values[rows], values], dim=2)
    seen = torch.cat([layer.filled[rows][:, None, None, :].expand(5, 1, 3, -1), own], dim=-1)
    expected = torch.nn.functional.scaled_dot_product_attention(
        query, whole_keys, whole_values, attn_mask=seen, scale=0.25, enable_gqa=True
    )
    torch.testing.assert_close(result, expected.transpose(1, 2))


def test_images_that_differ_off_the_sampled_values_are_still_told_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cosmos_workflow.engines.hf import shared_prefix

    big = np.zeros((3, 40, 40), dtype=np.float32)
    nudged = big.copy()
    nudged.ravel()[1] = 1.0  # not one of the sampled values (every SAMPLE_STRIDE-th)
    other = big.copy()
    other.ravel()[0] = 1.0  # a sampled value
    compared: list[int] = []
    same = shared_prefix._same_images
    monkeypatch.setattr(shared_prefix, "_same_images", lambda a, b: compared.append(1) or same(a, b))

    groups = group_prefixes(
        [
            request("a", [50], [big]),
            request("b", [51], [nudged]),
            request("c", [52], [other]),
            request("d", [53], [big]),
        ],
        END,
    )

    assert groups is not None and groups.group == (0, 1, 2, 0)
    assert len(compared) == 2  # b against a (equal samples, unequal images), d against a; c never
