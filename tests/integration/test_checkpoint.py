"""convert_checkpoint on a tiny Mistral-format Pixtral made here, and pick_variant.

The Mistral checkpoint is exported from the tiny Hugging Face model with names and an inverse
rotary permutation written out independently below; converting it back must give the very same
weights and logits, the hf engine must load and run it, and the permutation is checked against
Mistral's own (interleaved, complex) rotary formulation.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from cosmos_workflow.checkpoint import convert_checkpoint, pick_variant
from cosmos_workflow.engines import EncodedRequest, EngineConfig, SamplingParams, load_engine
from cosmos_workflow.engines.tiny import tiny_config
from cosmos_workflow.errors import ConfigError, ModelLoadError
from cosmos_workflow.tokenizer import bundled_tokenizer_path, load_tokenizer

HF_TO_MISTRAL = (  # independent of the converter's regex table
    ("model.vision_tower.transformer.layers.", "vision_encoder.transformer.layers."),
    ("model.vision_tower.", "vision_encoder."),
    ("model.multi_modal_projector.linear_1.", "vision_language_adapter.w_in."),
    ("model.multi_modal_projector.linear_2.", "vision_language_adapter.w_out."),
    ("model.language_model.embed_tokens.", "tok_embeddings."),
    ("model.language_model.norm.", "norm."),
    ("model.language_model.layers.", "layers."),
    ("lm_head.", "output."),
)
PARTS = {
    "self_attn.q_proj": "attention.wq",
    "self_attn.k_proj": "attention.wk",
    "self_attn.v_proj": "attention.wv",
    "self_attn.o_proj": "attention.wo",
    "attention.q_proj": "attention.wq",
    "attention.k_proj": "attention.wk",
    "attention.v_proj": "attention.wv",
    "attention.o_proj": "attention.wo",
    "mlp.gate_proj": "feed_forward.w1",
    "mlp.down_proj": "feed_forward.w2",
    "mlp.up_proj": "feed_forward.w3",
    "feed_forward.gate_proj": "feed_forward.w1",
    "feed_forward.down_proj": "feed_forward.w2",
    "feed_forward.up_proj": "feed_forward.w3",
    "input_layernorm": "attention_norm",
    "post_attention_layernorm": "ffn_norm",
}


def _mistral_name(name: str) -> str:
    for hf, mistral in HF_TO_MISTRAL:
        if name.startswith(hf):
            name = mistral + name[len(hf) :]
            break
    for hf, mistral in PARTS.items():
        name = name.replace(f".{hf}.", f".{mistral}.")
    return name


def _interleave(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """HF (halves) rows -> Mistral (interleaved pairs) rows, by explicit indices."""
    rows = weight.shape[0]
    d = rows // n_heads
    out = torch.empty_like(weight)
    for h in range(n_heads):
        for j in range(d // 2):
            out[h * d + 2 * j] = weight[h * d + j]
            out[h * d + 2 * j + 1] = weight[h * d + d // 2 + j]
    return out


def _reference_model() -> Any:
    from transformers import LlavaForConditionalGeneration

    torch.manual_seed(0)
    return LlavaForConditionalGeneration(tiny_config()).eval()


def _params(config: Any) -> dict[str, Any]:
    text, vision = config.text_config, config.vision_config
    return {
        "dim": text.hidden_size,
        "n_layers": text.num_hidden_layers,
        "head_dim": text.head_dim,
        "hidden_dim": text.intermediate_size,
        "n_heads": text.num_attention_heads,
        "n_kv_heads": text.num_key_value_heads,
        "rope_theta": text.rope_parameters["rope_theta"],
        "norm_eps": text.rms_norm_eps,
        "vocab_size": text.vocab_size,
        "max_position_embeddings": text.max_position_embeddings,
        "vision_encoder": {
            "hidden_size": vision.hidden_size,
            "intermediate_size": vision.intermediate_size,
            "num_hidden_layers": vision.num_hidden_layers,
            "num_attention_heads": vision.num_attention_heads,
            "num_channels": 3,
            "image_size": vision.image_size,
            "patch_size": vision.patch_size,
            "rope_theta": vision.rope_parameters["rope_theta"],
            "image_token_id": 10,
            "adapter_bias": True,
        },
    }


def _export_mistral(model: Any, folder: Path) -> dict[str, torch.Tensor]:
    config = model.config
    heads = {
        "vision_encoder": (config.vision_config.num_attention_heads,) * 2,
        "text": (config.text_config.num_attention_heads, config.text_config.num_key_value_heads),
    }
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        target = _mistral_name(name)
        q_heads, k_heads = heads["vision_encoder" if target.startswith("vision_encoder") else "text"]
        if target.endswith((".wq.weight", ".wk.weight")):
            tensor = _interleave(tensor, q_heads if target.endswith(".wq.weight") else k_heads)
        tensors[target] = tensor.detach().clone().contiguous()
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "consolidated.safetensors"))
    (folder / "params.json").write_text(json.dumps(_params(config)))
    shutil.copyfile(bundled_tokenizer_path(), folder / "tekken.json")
    return tensors


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, torch.Tensor], Path]:
    root = tmp_path_factory.mktemp("ckpt")
    reference = _reference_model()
    source = _export_mistral(reference, root / "mistral")
    return reference, source, convert_checkpoint(root / "mistral", root / "hf")


@pytest.mark.slow
def test_converted_weights_equal_the_permuted_source(
    converted: tuple[Any, dict[str, torch.Tensor], Path],
) -> None:
    from transformers import LlavaForConditionalGeneration

    reference, source, folder = converted
    assert (folder / "config.json").is_file() and (folder / "tekken.json").is_file()
    model = LlavaForConditionalGeneration.from_pretrained(folder).eval()
    loaded, expected = model.state_dict(), reference.state_dict()
    assert set(loaded) == set(expected) and len(source) == len(expected)
    for name, tensor in expected.items():
        assert torch.equal(loaded[name], tensor), name


@pytest.mark.slow
def test_converted_model_gives_the_same_logits(converted: tuple[Any, dict[str, torch.Tensor], Path]) -> None:
    from transformers import LlavaForConditionalGeneration

    reference, _, folder = converted
    model = LlavaForConditionalGeneration.from_pretrained(folder).eval()
    frame = np.random.default_rng(1).integers(0, 255, (32, 48, 3), dtype=np.uint8)
    encoding = load_tokenizer().encode("a red car", [frame])
    inputs = {
        "input_ids": torch.tensor([encoding.token_ids]),
        "pixel_values": torch.tensor(np.stack(encoding.pixel_values)),
        "image_sizes": torch.tensor([[32, 48]]),
    }
    with torch.no_grad():
        assert torch.allclose(model(**inputs).logits, reference(**inputs).logits, atol=1e-6)


@pytest.mark.slow
def test_hf_engine_runs_the_converted_checkpoint(
    converted: tuple[Any, dict[str, torch.Tensor], Path],
) -> None:
    folder = converted[2]
    frames = [np.full((32, 32, 3), 90, dtype=np.uint8)]
    encoding = load_tokenizer(folder / "tekken.json").encode("a dog", frames)
    request = EncodedRequest(
        key="k",
        prompt="a dog",
        token_ids=encoding.token_ids,
        frames=frames,
        pixel_values=encoding.pixel_values,
    )
    with load_engine(EngineConfig(engine="hf", model=str(folder), device="cpu")) as engine:
        (result,) = engine.generate([request], SamplingParams(max_tokens=5, seed=0))
    assert result.finish_reason in ("stop", "length"), result.error
    assert 1 <= result.completion_tokens <= 5


@pytest.mark.slow
def test_permutation_matches_mistral_rotary(converted: tuple[Any, dict[str, torch.Tensor], Path]) -> None:
    """Attention scores with Mistral's interleaved complex rotary on the source weights equal those
    with transformers' rotate-half rotary on the converted weights."""
    reference, source, _ = converted
    text = reference.config.text_config
    d, theta = text.head_dim, text.rope_parameters["rope_theta"]
    x = torch.randn(6, text.hidden_size, dtype=torch.float64)
    pos = torch.arange(6, dtype=torch.float64)[:, None]
    freqs = pos * theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # (seq, d/2)

    def mistral(w: torch.Tensor) -> torch.Tensor:
        y = (x @ w.double().T)[:, :d].reshape(6, d // 2, 2)
        z = torch.view_as_complex(y.contiguous()) * torch.polar(torch.ones_like(freqs), freqs)
        return torch.view_as_real(z).reshape(6, d)

    def hf(w: torch.Tensor) -> torch.Tensor:
        y = (x @ w.double().T)[:, :d]
        cos, sin = torch.cat([freqs.cos()] * 2, -1), torch.cat([freqs.sin()] * 2, -1)
        rotated = torch.cat([-y[:, d // 2 :], y[:, : d // 2]], -1)
        return y * cos + rotated * sin

    layer = reference.model.language_model.layers[0].self_attn
    scores_mistral = (
        mistral(source["layers.0.attention.wq.weight"]) @ mistral(source["layers.0.attention.wk.weight"]).T
    )
    scores_hf = hf(layer.q_proj.weight.detach()) @ hf(layer.k_proj.weight.detach()).T
    assert torch.allclose(scores_mistral, scores_hf, atol=1e-9)


def test_missing_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "src" / "depth").mkdir(parents=True)
    with pytest.raises(
        ModelLoadError, match=r"missing params.json, consolidated.safetensors, tekken.json.*\['depth'\]"
    ):
        convert_checkpoint(tmp_path / "src", tmp_path / "dst")


def test_non_empty_destination_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("params.json", "consolidated.safetensors", "tekken.json"):
        (src / name).write_text("{}")
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        convert_checkpoint(src, tmp_path / "dst")


def _layout(root: Path, *variants: str) -> Path:
    for variant in variants:
        (root / variant).mkdir(parents=True)
        (root / variant / "params.json").write_text("{}")
    return root


@pytest.mark.parametrize(
    ("control", "variant"),
    [("vis", "viscontrol"), ("edge", "viscontrol"), ("depth", "depth"), ("seg", "segmentation")],
)
def test_pick_variant_per_control(tmp_path: Path, control: str, variant: str) -> None:
    root = _layout(tmp_path, "depth", "segmentation", "viscontrol")
    assert pick_variant(root, control) == root / variant


def test_pick_variant_flat_layout_is_itself(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert pick_variant(tmp_path, "depth") == tmp_path
    assert pick_variant(tmp_path, None) == tmp_path


def test_pick_variant_errors_name_the_fix(tmp_path: Path) -> None:
    root = _layout(tmp_path / "ckpt", "depth")
    with pytest.raises(ConfigError, match=r"no checkpoint for control 'seg'.*\['depth'\]"):
        pick_variant(root, "seg")
    with pytest.raises(ConfigError, match="give the spec a control"):
        pick_variant(root, None)
    with pytest.raises(ModelLoadError, match="neither a checkpoint"):
        pick_variant(tmp_path / "empty", "depth")
