"""The vLLM engine's own logic, with a tiny stand-in ``vllm`` module (vLLM needs a GPU).

The stand-in is an edge fake: it records what the engine passed and answers like vLLM's offline
``LLM.generate``. Real vLLM is not exercised here; its names are checked against the pinned
release's source in test_engine_vllm_contract.py.
"""

from __future__ import annotations

import json
import os
import sys
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, NotRequired, TypedDict

import numpy as np
import pytest

from cosmos_workflow.engines import EncodedRequest, EngineConfig, SamplingParams, load_engine
from cosmos_workflow.engines import vllm as engine
from cosmos_workflow.errors import EngineError, GPUOutOfMemoryError, ModelLoadError
from cosmos_workflow.tokenizer import load_tokenizer

BAD_TOKEN = 99_999  # a prompt holding this token makes the fake raise like vLLM does


class FakeLLMEngine:
    """As vLLM's ``LLMEngine``: requests added one at a time, finished in its own order by ``step``.

    Each step finishes the oldest ``per_step`` requests, newest of them first, and reports the
    prompt length it saw (image runs expanded, as vLLM's own count). ``step_error`` makes a step raise.
    """

    def __init__(self, llm: FakeLLM, per_step: int = 2) -> None:
        self.llm = llm
        self.per_step = per_step
        self.queue: list[tuple[str, dict[str, Any], Any]] = []
        self.most_in_flight = 0
        self.aborted: list[str] = []
        self.step_error: Exception | None = None
        self.steps = 0

    def add_request(self, request_id: str, prompt: dict[str, Any], params: Any) -> str:
        if BAD_TOKEN in prompt["prompt_token_ids"]:
            raise ValueError(
                "The decoder prompt (length 5000) is longer than the maximum model length of 4096."
            )
        self.queue.append((request_id, prompt, params))
        self.most_in_flight = max(self.most_in_flight, len(self.queue))
        return request_id

    def step(self) -> list[Any]:
        self.steps += 1
        if self.step_error is not None:
            raise self.step_error
        done, self.queue = self.queue[: self.per_step], self.queue[self.per_step :]
        started = [types.SimpleNamespace(request_id="unrelated", finished=False)]
        return started + [self._finished(rid, prompt, params) for rid, prompt, params in reversed(done)]

    def _finished(self, request_id: str, prompt: dict[str, Any], params: Any) -> Any:
        output = self.llm._output(prompt, params)
        output.request_id, output.finished = request_id, True
        output.prompt_token_ids = prompt["prompt_token_ids"] + [0] * self.llm.extra_prompt_tokens
        return output

    def abort_request(self, request_ids: list[str]) -> None:
        self.aborted += request_ids


class FakeLLM:
    instances: ClassVar[list[FakeLLM]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.env = dict(os.environ)
        self.calls: list[list[dict[str, Any]]] = []
        self.finish_reason = "stop"
        self.error: Exception | None = None
        self.extra_prompt_tokens = 0
        self.llm_engine = FakeLLMEngine(self)
        FakeLLM.instances.append(self)

    def generate(
        self, prompts: Sequence[dict[str, Any]], *, sampling_params: Any, use_tqdm: bool
    ) -> list[Any]:
        self.calls.append(list(prompts))
        if self.error is not None:
            raise self.error
        if any(BAD_TOKEN in p["prompt_token_ids"] for p in prompts):
            raise ValueError("Prompt length of 5000 is longer than the maximum model length of 4096.")
        return [self._output(p, sampling_params) for p in prompts]

    def _output(self, prompt: dict[str, Any], params: Any) -> Any:
        images = len(prompt.get("multi_modal_data", {}).get("image", []))
        completion = types.SimpleNamespace(
            text=f"described {len(prompt['prompt_token_ids'])} ids and {images} images",
            finish_reason=self.finish_reason,
            token_ids=[5] * min(7, params.max_tokens),
        )
        return types.SimpleNamespace(outputs=[completion])


class TokensPrompt(TypedDict):
    """As vLLM's: the token ids, and optionally the images."""

    prompt_token_ids: list[int]
    multi_modal_data: NotRequired[dict[str, Any]]


class TextOnlyTokensPrompt(TypedDict):
    prompt_token_ids: list[int]


class FakeSamplingParams(types.SimpleNamespace):
    """As vLLM's msgspec struct: keyword fields, listed in ``__struct_fields__``."""

    __struct_fields__ = (
        "temperature",
        "top_p",
        "top_k",
        "max_tokens",
        "seed",
        "ignore_eos",
        "output_kind",
        "allowed_token_ids",
    )


class RequestOutputKind:
    CUMULATIVE, DELTA, FINAL_ONLY = 0, 1, 2


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    module = types.ModuleType("vllm")
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = TokensPrompt  # type: ignore[attr-defined]
    module.inputs = inputs  # type: ignore[attr-defined]
    module.LLM = FakeLLM  # type: ignore[attr-defined]
    module.SamplingParams = FakeSamplingParams  # type: ignore[attr-defined]
    module.__version__ = "0.0.stand-in"  # type: ignore[attr-defined]
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.RequestOutputKind = RequestOutputKind  # type: ignore[attr-defined]
    module.sampling_params = sampling  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.inputs", inputs)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)
    FakeLLM.instances.clear()
    yield module


@pytest.fixture
def mistral_ckpt(tmp_path: Path) -> Path:
    for name in ("params.json", "consolidated.safetensors"):
        (tmp_path / name).write_text("{}")
    return tmp_path


def _config(model: Path, **options: Any) -> EngineConfig:
    return EngineConfig(engine="vllm", model=str(model), options=options)


def _request(key: str, tokens: int = 50, frames: int = 0, bad: bool = False) -> EncodedRequest:
    ids = [1] * tokens
    if bad:
        ids[-1] = BAD_TOKEN
    images = [np.zeros((32, 48, 3), dtype=np.uint8) for _ in range(frames)]
    return EncodedRequest(key=key, prompt="p", token_ids=ids, frames=images)


def test_mistral_checkpoint_gets_cosmos_defaults(fake_vllm: types.ModuleType, mistral_ckpt: Path) -> None:
    load_engine(_config(mistral_ckpt))
    kwargs = FakeLLM.instances[0].kwargs
    assert kwargs["tokenizer_mode"] == kwargs["load_format"] == kwargs["config_format"] == "mistral"
    assert kwargs["limit_mm_per_prompt"] == {"image": 2}
    assert (kwargs["max_model_len"], kwargs["gpu_memory_utilization"]) == (4096, 0.9)
    assert "max_num_seqs" not in kwargs  # vLLM sizes it to the card; Cosmos's 2 would idle the GPU
    assert kwargs["enable_prefix_caching"] is True
    assert set(kwargs) <= engine.LLM_KWARGS_USED


def test_options_tune_throughput(fake_vllm: types.ModuleType, mistral_ckpt: Path) -> None:
    load_engine(_config(mistral_ckpt, max_num_seqs=8, gpu_memory_utilization=0.5))
    assert FakeLLM.instances[0].kwargs["max_num_seqs"] == 8
    assert FakeLLM.instances[0].kwargs["gpu_memory_utilization"] == 0.5


def test_hf_checkpoint_uses_auto_tokenizer(fake_vllm: types.ModuleType, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    load_engine(_config(tmp_path))
    kwargs = FakeLLM.instances[0].kwargs
    assert kwargs["tokenizer_mode"] == "auto"
    assert "load_format" not in kwargs


def test_not_a_checkpoint_names_the_variants(fake_vllm: types.ModuleType, tmp_path: Path) -> None:
    (tmp_path / "depth").mkdir()
    (tmp_path / "viscontrol").mkdir()
    with pytest.raises(ModelLoadError, match=r"per-control variants \['depth', 'viscontrol'\]"):
        load_engine(_config(tmp_path))


def test_missing_vllm_says_how_to_install(monkeypatch: pytest.MonkeyPatch, mistral_ckpt: Path) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ModelLoadError, match=r"pip install 'cosmos-workflow\[vllm\]' or use --engine hf"):
        load_engine(_config(mistral_ckpt))


def test_torchrun_variables_hidden_while_starting(
    fake_vllm: types.ModuleType, mistral_ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torchrun = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "MASTER_ADDR": "h", "MASTER_PORT": "29500"}
    for name, value in {**torchrun, "TORCHELASTIC_RUN_ID": "x", "GROUP_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    load_engine(_config(mistral_ckpt))
    seen = FakeLLM.instances[0].env
    assert not {"TORCHELASTIC_RUN_ID", "GROUP_RANK", *torchrun} & set(seen)
    assert seen["CUDA_VISIBLE_DEVICES"] == "1"
    assert os.environ["RANK"] == "3" and "CUDA_VISIBLE_DEVICES" not in os.environ  # restored


def test_gpu_pinned_within_visible_devices(
    fake_vllm: types.ModuleType, mistral_ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    load_engine(_config(mistral_ckpt))
    assert FakeLLM.instances[0].env["CUDA_VISIBLE_DEVICES"] == "5"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "4,5"


def test_invalid_requests_fail_alone_before_the_call(fake_vllm: types.ModuleType, mistral_ckpt: Path) -> None:
    eng = load_engine(_config(mistral_ckpt))
    requests = [_request("ok1"), _request("long", tokens=3900), _request("images", frames=3), _request("ok2")]
    results = eng.generate(requests, SamplingParams(max_tokens=300))
    assert [r.finish_reason for r in results] == ["stop", "error", "error", "stop"]
    assert results[1].error_kind == "context_length" and "--max-model-len" in (results[1].error or "")
    assert "3 images" in (results[2].error or "")
    sent = FakeLLM.instances[0].calls
    assert len(sent) == 1 and len(sent[0]) == 2  # one call, only the valid requests


def test_runtime_rejection_is_isolated(fake_vllm: types.ModuleType, mistral_ckpt: Path) -> None:
    eng = load_engine(_config(mistral_ckpt))
    results = eng.generate([_request("a"), _request("bad", bad=True), _request("c")], SamplingParams())
    assert [r.finish_reason for r in results] == ["stop", "error", "stop"]
    assert results[1].error_kind == "context_length"
    assert [len(c) for c in FakeLLM.instances[0].calls] == [3, 1, 1, 1]


def test_out_of_memory_raises_for_back_off(fake_vllm: types.ModuleType, mistral_ckpt: Path) -> None:
    eng = load_engine(_config(mistral_ckpt))
    FakeLLM.instances[0].error = RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")
    with pytest.raises(GPUOutOfMemoryError, match="lower --batch-size"):
        eng.generate([_request("a"), _request("b")], SamplingParams())


def test_finish_reasons_are_mapped(fake_vllm: types.ModuleType, mistral_ckpt: Path) -> None:
    eng = load_engine(_config(mistral_ckpt))
    FakeLLM.instances[0].finish_reason = "length"
    (cut,) = eng.generate([_request("a")], SamplingParams())
    FakeLLM.instances[0].finish_reason = "abort"
    (aborted,) = eng.generate([_request("a")], SamplingParams())
    assert (cut.finish_reason, cut.completion_tokens) == ("length", 7)
    assert aborted.finish_reason == "error" and "abort" in (aborted.error or "")


def _real_request() -> EncodedRequest:
    frames = [np.full((32, 48, 3), 100, dtype=np.uint8), np.full((16, 32, 3), 7, dtype=np.uint8)]
    encoding = load_tokenizer().encode("a red car", frames)
    return EncodedRequest(key="k", prompt="a red car", token_ids=encoding.token_ids, frames=frames)


def test_mistral_prompt_goes_in_exactly_as_tokenized(fake_vllm: types.ModuleType, mistral_ckpt: Path) -> None:
    request = _real_request()
    load_engine(_config(mistral_ckpt)).generate([request], SamplingParams())
    (prompt,) = FakeLLM.instances[0].calls[0]
    assert prompt["prompt_token_ids"] == list(request.token_ids)
    assert [im.size for im in prompt["multi_modal_data"]["image"]] == [(48, 32), (32, 16)]


def test_hf_prompt_has_one_placeholder_per_image(fake_vllm: types.ModuleType, tmp_path: Path) -> None:
    """vLLM expands each [IMG] of a Llava checkpoint itself, with the same arithmetic."""
    (tmp_path / "config.json").write_text(json.dumps({}))
    request = _real_request()
    load_engine(_config(tmp_path)).generate([request], SamplingParams())
    ids = FakeLLM.instances[0].calls[0][0]["prompt_token_ids"]
    image_id, brk, end = 10, 12, 13
    assert ids.count(image_id) == 2 and brk not in ids and end not in ids
    original = list(request.token_ids)
    assert [t for t in original if t not in (image_id, brk, end)] == [t for t in ids if t != image_id]
    tok = load_tokenizer()
    assert len(original) - len(ids) == tok.image_tokens(48, 32) + tok.image_tokens(32, 16) - 2


def test_collapse_keeps_text_between_images() -> None:
    ids = [1, 3, 10, 10, 12, 10, 10, 13, 10, 13, 55, 4]
    assert engine.collapse_image_runs(ids, (10, 12, 13)) == [1, 3, 10, 10, 55, 4]


def test_a_vllm_without_image_prompts_is_refused_in_one_line(
    fake_vllm: types.ModuleType, mistral_ckpt: Path
) -> None:
    fake_vllm.inputs.TokensPrompt = TextOnlyTokensPrompt
    with pytest.raises(ModelLoadError) as caught:
        load_engine(_config(mistral_ckpt))
    message = str(caught.value)
    assert "vLLM 0.0.stand-in lacks TokensPrompt['multi_modal_data']" in message and "\n" not in message
    assert f"checked against vLLM {', '.join(engine.VLLM_VERSIONS_CHECKED)}" in message
    assert not FakeLLM.instances, "refused before the engine started"


def test_a_vllm_without_sampling_fields_is_refused(fake_vllm: types.ModuleType, mistral_ckpt: Path) -> None:
    fake_vllm.SamplingParams = type("Params", (types.SimpleNamespace,), {"__struct_fields__": ("top_p",)})
    with pytest.raises(
        ModelLoadError,
        match=r"lacks SamplingParams.allowed_token_ids, SamplingParams.ignore_eos, SamplingParams.max_tokens",
    ):
        load_engine(_config(mistral_ckpt))


class QuietLLM(FakeLLM):
    """A vLLM whose generate has no progress-bar switch."""

    def generate(self, prompts: Sequence[dict[str, Any]], *, sampling_params: Any) -> list[Any]:  # type: ignore[override]
        return super().generate(prompts, sampling_params=sampling_params, use_tqdm=False)


def test_use_tqdm_is_passed_only_where_generate_takes_it(
    fake_vllm: types.ModuleType, mistral_ckpt: Path
) -> None:
    fake_vllm.LLM = QuietLLM
    (result,) = load_engine(_config(mistral_ckpt)).generate([_request("a")], SamplingParams())
    assert result.finish_reason == "stop" and len(FakeLLM.instances[0].calls) == 1


# --------------------------------------------------------------------------------------------
# Streaming: requests added as they come, answers in finishing order
# --------------------------------------------------------------------------------------------


def _stream(
    engine_: Any, requests: Iterator[EncodedRequest] | list[EncodedRequest], **sampling: Any
) -> list[Any]:
    return [pair for group in engine_.generate_stream(requests, SamplingParams(**sampling)) for pair in group]


def test_stream_answers_every_request_in_finishing_order(
    fake_vllm: types.ModuleType, mistral_ckpt: Path
) -> None:
    vllm_engine = load_engine(_config(mistral_ckpt))
    assert vllm_engine.streams
    requests = [_request(f"r{i}", tokens=10 + i, frames=i % 3) for i in range(5)]
    answers = _stream(vllm_engine, requests, max_tokens=20)
    assert [key for key, _ in answers] == ["r1", "r0", "r3", "r2", "r4"]
    by_key = dict(answers)
    assert by_key["r4"].text == "described 14 ids and 1 images" and by_key["r4"].prompt_tokens == 14
    fake = FakeLLM.instances[0].llm_engine
    assert fake.queue == [] and fake.aborted == []
    assert all(
        params.output_kind == RequestOutputKind.FINAL_ONLY for _, _, params in [("", "", p) for p in []]
    )


def test_stream_sends_final_only_and_ignore_eos_when_asked(
    fake_vllm: types.ModuleType, mistral_ckpt: Path
) -> None:
    vllm_engine = load_engine(_config(mistral_ckpt, ignore_eos=True))
    fake = FakeLLM.instances[0].llm_engine
    sent: list[Any] = []
    original = fake.add_request
    fake.add_request = lambda rid, prompt, params: (sent.append(params), original(rid, prompt, params))[1]  # type: ignore[method-assign]
    _stream(vllm_engine, [_request("a")], max_tokens=30, seed=5)
    assert sent[0].output_kind == RequestOutputKind.FINAL_ONLY
    assert (sent[0].ignore_eos, sent[0].max_tokens, sent[0].seed) == (True, 30, 5)


def test_ascii_only_answers_are_sampled_from_the_ascii_tokens_only(
    fake_vllm: types.ModuleType, mistral_ckpt: Path
) -> None:
    from cosmos_workflow.tokenizer import load_tokenizer, tokenizer_path_for

    vllm_engine = load_engine(_config(mistral_ckpt))
    fake = FakeLLM.instances[0].llm_engine
    sent: list[Any] = []
    original = fake.add_request
    fake.add_request = lambda rid, prompt, params: (sent.append(params), original(rid, prompt, params))[1]  # type: ignore[method-assign]
    _stream(vllm_engine, [_request("a")], max_tokens=30, ascii_only=True)
    _stream(vllm_engine, [_request("b")], max_tokens=30)
    tokenizer = load_tokenizer(tokenizer_path_for(mistral_ckpt))
    allowed = sent[0].allowed_token_ids
    assert tokenizer.eos_id in allowed and len(allowed) < tokenizer.vocab_size
    assert all(tokenizer.decode([i]).isascii() for i in allowed[:: len(allowed) // 50])
    assert not hasattr(sent[1], "allowed_token_ids")  # not asked: every token


def test_stream_keeps_at_most_the_window_in_flight_and_pulls_lazily(
    fake_vllm: types.ModuleType, mistral_ckpt: Path
) -> None:
    vllm_engine = load_engine(_config(mistral_ckpt, stream_window=3))
    pulled: list[str] = []

    def requests() -> Iterator[EncodedRequest]:
        for i in range(10):
            pulled.append(f"r{i}")
            yield _request(f"r{i}")

    stream = vllm_engine.generate_stream(requests(), SamplingParams())
    first = next(stream)
    assert len(pulled) == 3 and len(first) == 2  # 3 added, then one step finished 2
    rest = [pair for group in stream for pair in group]
    assert sorted(k for k, _ in [*first, *rest]) == sorted(f"r{i}" for i in range(10))
    assert FakeLLM.instances[0].llm_engine.most_in_flight == 3


def test_stream_refused_requests_fail_alone(fake_vllm: types.ModuleType, mistral_ckpt: Path) -> None:
    vllm_engine = load_engine(_config(mistral_ckpt))
    requests = [_request("ok1"), _request("bad", bad=True), _request("huge", tokens=4000), _request("ok2")]
    answers = dict(_stream(vllm_engine, requests, max_tokens=300))
    assert answers["ok1"].error is None and answers["ok2"].error is None
    assert answers["bad"].error_kind == "context_length" and "maximum model length" in (
        answers["bad"].error or ""
    )
    assert answers["huge"].error_kind == "context_length" and "--max-resolution" in (
        answers["huge"].error or ""
    )
    assert "huge" not in {p["prompt_token_ids"][0] for _, p, _ in FakeLLM.instances[0].llm_engine.queue}


def test_stream_reports_vllms_own_prompt_count(fake_vllm: types.ModuleType, mistral_ckpt: Path) -> None:
    vllm_engine = load_engine(_config(mistral_ckpt))
    FakeLLM.instances[0].extra_prompt_tokens = 2
    ((_, generation),) = _stream(vllm_engine, [_request("a", tokens=40)])
    assert generation.prompt_tokens == 42  # the runner compares it with the plan's 40


def test_stream_stopped_early_aborts_what_is_in_flight(
    fake_vllm: types.ModuleType, mistral_ckpt: Path
) -> None:
    vllm_engine = load_engine(_config(mistral_ckpt))
    stream = vllm_engine.generate_stream([_request(f"r{i}") for i in range(6)], SamplingParams())
    next(stream)
    stream.close()
    fake = FakeLLM.instances[0].llm_engine
    assert len(fake.aborted) == 4 and all(
        rid.split("-", 1)[1] in {"r0", "r1", "r2", "r3", "r4", "r5"} for rid in fake.aborted
    )


def test_stream_step_failure_is_an_engine_error_or_out_of_memory(
    fake_vllm: types.ModuleType, mistral_ckpt: Path
) -> None:
    vllm_engine = load_engine(_config(mistral_ckpt))
    fake = FakeLLM.instances[0].llm_engine
    fake.step_error = RuntimeError("engine core died")
    with pytest.raises(EngineError, match=r"engine core died.*rerun the same command"):
        _stream(vllm_engine, [_request("a"), _request("b")])
    assert len(fake.aborted) == 2
    fake.step_error = RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")
    with pytest.raises(GPUOutOfMemoryError):
        _stream(vllm_engine, [_request("c")])


def test_a_vllm_engine_without_add_request_falls_back_to_batches(
    fake_vllm: types.ModuleType, mistral_ckpt: Path
) -> None:
    class OldLLM(FakeLLM):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.llm_engine = types.SimpleNamespace(step=lambda: [])  # type: ignore[assignment]

    fake_vllm.LLM = OldLLM  # type: ignore[attr-defined]
    vllm_engine = load_engine(_config(mistral_ckpt))
    assert vllm_engine.streams is False
    answers = dict(_stream(vllm_engine, [_request("a"), _request("b")]))
    assert set(answers) == {"a", "b"} and FakeLLM.instances[-1].calls  # through LLM.generate


def test_random_12b_starts_from_a_mistral_folder_with_dummy_weights(
    fake_vllm: types.ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COSMOS_WORKFLOW_CACHE", str(tmp_path / "cache"))
    vllm_engine = load_engine(EngineConfig(engine="vllm", model="pixtral-12b-random"))
    kwargs = FakeLLM.instances[0].kwargs
    folder = Path(kwargs["model"])
    assert (
        kwargs["load_format"] == "dummy" and kwargs["tokenizer_mode"] == kwargs["config_format"] == "mistral"
    )
    assert json.loads((folder / "params.json").read_text())["n_layers"] == 40
    assert (folder / "tekken.json").read_bytes() == load_tokenizer().path.read_bytes()
    assert vllm_engine.model_name == "pixtral-12b-random"


def test_random_12b_params_match_the_hf_engines_architecture() -> None:
    pytest.importorskip("transformers")
    from cosmos_workflow.engines.tiny import PIXTRAL_12B_PARAMS, pixtral_12b_config

    config = pixtral_12b_config()
    text, vision, params = config.text_config, config.vision_config, PIXTRAL_12B_PARAMS
    assert (params["dim"], params["n_layers"], params["hidden_dim"]) == (
        text.hidden_size,
        text.num_hidden_layers,
        text.intermediate_size,
    )
    assert (params["n_heads"], params["n_kv_heads"], params["head_dim"], params["vocab_size"]) == (
        text.num_attention_heads,
        text.num_key_value_heads,
        text.head_dim,
        text.vocab_size,
    )
    encoder = params["vision_encoder"]
    assert (encoder["hidden_size"], encoder["num_hidden_layers"], encoder["intermediate_size"]) == (
        vision.hidden_size,
        vision.num_hidden_layers,
        vision.intermediate_size,
    )
    assert encoder["image_token_id"] == config.image_token_index
