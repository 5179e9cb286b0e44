"""convert_checkpoint on tiny Mistral-format Pixtral checkpoints made here, and pick_variant.

Two independent sources. A random Mistral-format checkpoint written from vLLM's names and shapes
(tests/mistral_format.py) is converted, and the converted model's logits must equal those of a
forward pass written to Mistral's own conventions, without images and with two; every config
value must come from params.json, the tokenizer or Pixtral's definition. The tiny Hugging Face
model exported to Mistral's format (names and the inverse rotary permutation written out below)
must convert back to the very same weights, and the hf engine must run it. Bad params.json files
each give one line naming the key and the fix.
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
from cosmos_workflow.engines.hf import hf_batch_tensors
from cosmos_workflow.engines.tiny import tiny_config
from cosmos_workflow.errors import ConfigError, ModelLoadError
from cosmos_workflow.tokenizer import bundled_tokenizer_path, load_tokenizer
from tests import mistral_format

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


# --------------------------------------------------------------------------------------------
# Against the independent reference: a random Mistral-format checkpoint, Mistral's forward pass
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, torch.Tensor], Path, Any]:
    """(the source tensors, the converted folder, the converted model in float64)."""
    from transformers import LlavaForConditionalGeneration

    root = tmp_path_factory.mktemp("reference")
    tensors = mistral_format.write_checkpoint(root / "mistral")
    folder = convert_checkpoint(root / "mistral", root / "hf")
    model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=torch.float64).eval()
    return tensors, folder, model


def _both_logits(
    reference: tuple[dict[str, torch.Tensor], Path, Any], frames: list[np.ndarray], **options: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    tensors, folder, model = reference
    encoding = load_tokenizer(folder / "tekken.json").encode("a red car turns left at the crossing", frames)
    request = EncodedRequest(
        key="k", prompt="p", token_ids=encoding.token_ids, pixel_values=encoding.pixel_values
    )
    batch = hf_batch_tensors([request])
    if "pixel_values" in batch:
        batch["pixel_values"] = batch["pixel_values"].to(torch.float64)
    with torch.no_grad():
        converted = model(**batch).logits[0]
    expected = mistral_format.reference_logits(
        tensors, mistral_format.PARAMS, encoding.token_ids, encoding.pixel_values, **options
    )
    return converted, expected


def _frames() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [
        rng.integers(0, 256, (32, 48, 3), dtype=np.uint8),
        rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
    ]


# transformers computes rotary angles in float32: 1e-5 is that rounding, far below any real difference
TOLERANCE = 1e-5


@pytest.mark.slow
def test_text_only_logits_equal_the_mistral_reference(
    reference: tuple[dict[str, torch.Tensor], Path, Any],
) -> None:
    converted, expected = _both_logits(reference, [])
    assert (converted - expected).abs().max() < TOLERANCE
    assert torch.equal(converted.argmax(-1), expected.argmax(-1))


@pytest.mark.slow
def test_logits_with_two_images_equal_the_mistral_reference(
    reference: tuple[dict[str, torch.Tensor], Path, Any],
) -> None:
    converted, expected = _both_logits(reference, _frames())
    assert converted.shape[0] > 2 * 6, "the prompt holds both images' patches"
    assert (converted - expected).abs().max() < TOLERANCE
    assert torch.equal(converted.argmax(-1), expected.argmax(-1))


@pytest.mark.slow
def test_the_image_comparison_would_catch_a_gelu_vision_tower(
    reference: tuple[dict[str, torch.Tensor], Path, Any],
) -> None:
    """The defect this guards against: the same reference with GELU in the vision feed-forward is far off."""
    converted, gelu = _both_logits(reference, _frames(), vision_activation=torch.nn.functional.gelu)
    assert (converted - gelu).abs().max() > 1000 * TOLERANCE


@pytest.mark.slow
def test_every_config_value_comes_from_params_the_tokenizer_or_pixtral(
    reference: tuple[dict[str, torch.Tensor], Path, Any],
) -> None:
    config = json.loads((reference[1] / "config.json").read_text())
    text, vision, params = config["text_config"], config["vision_config"], mistral_format.PARAMS
    tower = params["vision_encoder"]
    assert vision["hidden_act"] == "silu" and config["projector_hidden_act"] == "gelu"
    assert (text["hidden_size"], text["intermediate_size"], text["head_dim"]) == (64, 96, 24)
    assert (text["num_attention_heads"], text["num_key_value_heads"], text["num_hidden_layers"]) == (4, 2, 2)
    assert text["rope_parameters"]["rope_theta"] == params["rope_theta"]
    assert text["rms_norm_eps"] == params["norm_eps"] and text["hidden_act"] == "silu"
    assert text["vocab_size"] == params["vocab_size"] and text["max_position_embeddings"] == 131072
    assert (text["bos_token_id"], text["eos_token_id"], text["pad_token_id"]) == (1, 2, 11)
    assert text["sliding_window"] is None and config["tie_word_embeddings"] is False
    assert vision["rope_parameters"]["rope_theta"] == tower["rope_theta"]
    assert (vision["hidden_size"], vision["intermediate_size"], vision["num_attention_heads"]) == (48, 80, 4)
    assert (vision["image_size"], vision["patch_size"], vision["num_channels"]) == (1024, 16, 3)
    assert config["image_token_index"] == 10 and config["multimodal_projector_bias"] is True
    assert (config["vision_feature_layer"], config["vision_feature_select_strategy"]) == (-1, "full")


# --------------------------------------------------------------------------------------------
# Bad params.json files: one line each, naming the key and the fix
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("good") / "mistral"
    mistral_format.write_checkpoint(folder)
    return folder


def _with_params(good: Path, target: Path, text: str) -> Path:
    shutil.copytree(good, target)
    (target / "params.json").write_text(text)
    return target


def _changed(**changes: Any) -> str:
    params = json.loads(json.dumps(mistral_format.PARAMS))
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        section = params
        for parent in parents:
            section = section[parent]
        if value is _DELETE:
            del section[key]
        else:
            section[key] = value
    return json.dumps(params)


_DELETE = object()

BAD_PARAMS = [
    pytest.param('{"dim": 64,', r"not valid JSON \(.* at line 1, column \d+\); re-download", id="malformed"),
    pytest.param("[1, 2]", r"holds a JSON list, not an object", id="not-an-object"),
    pytest.param(_changed(dim=_DELETE), r"params.json: dim is missing; fix params.json", id="missing-key"),
    pytest.param(
        _changed(n_heads="4"), r"n_heads input should be a valid integer \(got '4'\)", id="wrong-type"
    ),
    pytest.param(_changed(norm_eps=-1.0), r"norm_eps input should be greater than 0", id="negative"),
    pytest.param(
        _changed(vision_encoder=_DELETE), r"no vision_encoder section: .* --engine vllm", id="no-vision"
    ),
    pytest.param(
        _changed(vision_encoder__patch_size=_DELETE),
        r"vision_encoder.patch_size is missing",
        id="missing-vision-key",
    ),
    pytest.param(_changed(n_kv_heads=3), r"n_heads 4 is not a multiple of n_kv_heads 3", id="gqa-groups"),
    pytest.param(
        _changed(head_dim=_DELETE, dim=66),
        r"dim 66 does not split into n_heads 4; add head_dim",
        id="head-split",
    ),
    pytest.param(_changed(head_dim=25), r"head_dim 25 is odd", id="odd-head"),
    pytest.param(
        _changed(vision_encoder__num_attention_heads=5),
        r"vision_encoder.hidden_size 48 does not split into num_attention_heads 5",
        id="vision-head-split",
    ),
    pytest.param(
        _changed(moe={"num_experts": 8}), r"describes a mixture of experts \('moe'\).*--engine vllm", id="moe"
    ),
    pytest.param(
        _changed(vision_encoder__spatial_merge_size=2),
        r"spatial_merge_size 2: Pixtral-12B merges no patches",
        id="merge",
    ),
    pytest.param(_changed(sliding_window=4096), r"sliding_window 4096: Pixtral attends", id="sliding-window"),
    pytest.param(
        _changed(vision_encoder__image_token_id=11),
        r"params.json gives \[IMG\] the id 11 but tekken.json gives it 10",
        id="image-token",
    ),
    pytest.param(
        _changed(vocab_size=1000),
        r"tekken.json has 131072 tokens but params.json vocab_size is 1000",
        id="vocab",
    ),
    pytest.param(
        _changed(dim=128),
        r"layers.0.attention.wk.weight has shape \[48, 64\] but params.json implies \[48, 128\]; params",
        id="weights-of-another-size",
    ),
    pytest.param(
        _changed(n_layers=3),
        r"9 missing \(e.g. model.language_model.layers.2.input_layernorm.weight, .*\); check n_layers",
        id="weights-of-fewer-layers",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_PARAMS)
def test_bad_params_json_is_one_line_naming_the_key(
    good_source: Path, tmp_path: Path, text: str, message: str
) -> None:
    source = _with_params(good_source, tmp_path / "bad", text)
    with pytest.raises(ModelLoadError, match=message) as caught:
        convert_checkpoint(source, tmp_path / "dst")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "dst").exists()


def test_convert_command_prints_one_line_for_a_bad_params_json(good_source: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    source = _with_params(good_source, tmp_path / "bad", '{"dim": 64,')
    done = subprocess.run(
        [sys.executable, "-m", "cosmos_workflow", "convert-checkpoint", str(source), str(tmp_path / "dst")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "params.json is not valid JSON" in lines[0], done.stderr


def test_unknown_keys_are_named_in_a_warning(
    good_source: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from cosmos_workflow.checkpoint import read_params

    source = _with_params(
        good_source, tmp_path / "extra", _changed(flavour="vanilla", vision_encoder__colour=1)
    )
    params = read_params(source)
    assert params.head_dim == 24 and params.vision_encoder.image_break_token_id == 12
    assert "['flavour', 'vision_encoder.colour']" in caplog.text


def test_the_vision_section_may_sit_under_multimodal(good_source: Path, tmp_path: Path) -> None:
    """Newer Mistral files nest the vision encoder as multimodal.vision_encoder_args."""
    from cosmos_workflow.checkpoint import read_params

    params = json.loads(json.dumps(mistral_format.PARAMS))
    params["multimodal"] = {"vision_encoder_args": params.pop("vision_encoder")}
    nested = _with_params(good_source, tmp_path / "nested", json.dumps(params))
    assert read_params(nested) == read_params(good_source)
