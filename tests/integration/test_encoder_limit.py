"""Answers that fit the generator's text encoder (issue 25, item 5): every answer is counted with
the encoder's own tokenizer (a small one built here, offline, T5-like: a word a token and ``</s>``
at the end); one too long is generated again with a smaller budget, or fails in one line; records
carry ``encoder_tokens`` only when counted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cosmos_workflow import api
from cosmos_workflow.config import RunOptions, resolve_settings, run_options
from cosmos_workflow.engines import EngineConfig, SamplingParams
from cosmos_workflow.engines.fake import FakeEngine
from cosmos_workflow.errors import ConfigError, UsageError
from cosmos_workflow.executors import LocalExecutor
from cosmos_workflow.runner import request_key
from cosmos_workflow.specs.batch import BatchItem
from cosmos_workflow.tokenizer import EncoderTokenizer

WORDS = ["a", "detailed", "scene", "and", "the", "of", "in", "with", "city", "night", "forest", "robot"]


def write_encoder_tokenizer(folder: Path) -> Path:
    """A word-level tokenizer whose encoding ends with ``</s>``, as T5's does."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<unk>": 0, "</s>": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


@pytest.fixture
def encoder(tmp_path: Path) -> Path:
    return write_encoder_tokenizer(tmp_path / "t5")


def opts(tmp_path: Path, encoder: Path | None, limit: int | None = None, words: int = 100) -> RunOptions:
    return RunOptions(
        engine=EngineConfig(engine="fake", model="fake", options={"answer_words": words}),
        sampling=SamplingParams(max_tokens=300),
        encoder_tokenizer=encoder,
        encoder_limit=limit if limit is not None else (512 if encoder else None),
        clips_dir=tmp_path / "clips",
    )


def test_answers_are_counted_as_the_encoder_counts(encoder: Path) -> None:
    for path in (encoder, encoder / "tokenizer.json"):
        assert EncoderTokenizer(path).count("a city at night") == 5  # four words (one unknown) and </s>


@pytest.mark.parametrize("streams", [False, True], ids=["batches", "stream"])
def test_an_answer_too_long_is_generated_again_shorter(tmp_path: Path, encoder: Path, streams: bool) -> None:
    config = FakeEngine().config.model_copy(update={"options": {"answer_words": 100, "streams": streams}})
    engine = FakeEngine(config)
    items = [BatchItem(name="city", prompt="a city at night")]

    result = api.upsample(
        items, opts(tmp_path, encoder, 60), output=tmp_path / "o.json", executor=LocalExecutor(engine)
    )

    record = result.records[0]
    assert record.status == "text_only" and record.attempts == 2
    assert [s.max_tokens for s in engine.sampling] == [300, 100 * 60 * 9 // (101 * 10)]
    assert record.encoder_tokens == len(record.upsampled_prompt.split()) + 1 <= 60
    assert record.retry and "101 encoder tokens, over the limit 60" in record.retry
    assert json.loads((tmp_path / "o.json").read_text())[0]["encoder_tokens"] == record.encoder_tokens


def test_an_answer_that_stays_too_long_fails_in_one_line(tmp_path: Path, encoder: Path) -> None:
    long_answer = " ".join(["robot"] * 80)
    engine = FakeEngine(answers=[long_answer] * 3)
    items = [BatchItem(name="robot arm", prompt="a robot")]

    result = api.upsample(
        items, opts(tmp_path, encoder, 50), output=tmp_path / "o.json", executor=LocalExecutor(engine)
    )

    record = result.records[0]
    assert record.status == "error" and record.attempts == 3 and record.encoder_tokens == 81
    assert record.error is not None and "\n" not in record.error
    assert record.error.startswith("robot arm: the answer has 81 tokens") and "limit of 50" in record.error


def test_without_an_encoder_nothing_is_counted_and_keys_stay(tmp_path: Path, encoder: Path) -> None:
    items = [BatchItem(name="city", prompt="a city at night")]
    plain = opts(tmp_path, None)
    api.upsample(items, plain, output=tmp_path / "o.json", executor=LocalExecutor(FakeEngine()))
    assert "encoder_tokens" not in json.loads((tmp_path / "o.json").read_text())[0]
    keys = {request_key(items[0], o) for o in (plain, opts(tmp_path, encoder), opts(tmp_path, encoder, 60))}
    assert len(keys) == 3  # another encoder or limit: the answers are checked again


def test_settings_give_512_with_a_tokenizer_and_refuse_a_limit_alone(encoder: Path) -> None:
    def run(**flags: object) -> RunOptions:
        settings = resolve_settings(flags={"upsample": {"model": "fake", "engine": "fake", **flags}}, env={})
        return run_options(settings.settings.upsample)

    assert run(encoder_tokenizer=encoder).encoder_limit == 512
    assert run(encoder_tokenizer=encoder, encoder_limit=77).encoder_limit == 77
    assert run().encoder_limit is None
    with pytest.raises(UsageError, match="--encoder-limit 77 needs --encoder-tokenizer"):
        run(encoder_limit=77)


@pytest.mark.parametrize("kind", ["empty folder", "fifo", "not json"])
def test_an_unusable_encoder_tokenizer_is_one_line(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "enc"
    path.mkdir()
    if kind == "fifo":
        os.mkfifo(path / "tokenizer.json")
    elif kind == "not json":
        (path / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        EncoderTokenizer(path)
    assert "encoder tokenizer" in str(caught.value) and "\n" not in str(caught.value)


def test_a_retry_cut_at_its_budget_ends_at_its_last_full_sentence(tmp_path: Path, encoder: Path) -> None:
    from cosmos_workflow.engines import Generation

    first = " ".join(["city"] * 80)
    cut = Generation(
        text="A city at night. The forest and the",
        finish_reason="length",
        prompt_tokens=5,
        completion_tokens=8,
    )
    engine = FakeEngine(answers=[first, cut])
    items = [BatchItem(name="city", prompt="a city")]

    result = api.upsample(
        items, opts(tmp_path, encoder, 50), output=tmp_path / "o.json", executor=LocalExecutor(engine)
    )

    record = result.records[0]
    assert record.status == "text_only" and record.upsampled_prompt == "A city at night."
    assert record.attempts == 2 and record.encoder_tokens == 5
