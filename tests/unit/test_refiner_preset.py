"""The refiner preset (issue 25, item 3): its settings sit below the config file, the environment
and the flags; a system prompt comes from the preset or a user's file (through the one door), is
counted exactly in Pixtral's chat, and ASCII-only answers are checked once more in postprocess."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cosmos_workflow.config import plan_settings, resolve_settings, run_options
from cosmos_workflow.defaults import REFINER_SYSTEM_PROMPT
from cosmos_workflow.engines.base import Generation
from cosmos_workflow.errors import UsageError
from cosmos_workflow.families import family_for
from cosmos_workflow.postprocess import accept
from cosmos_workflow.tokenizer import ascii_token_ids, load_tokenizer

REFINER = {"preset": "predict2-refiner", "model": "tiny-random"}


def test_the_preset_gives_greedy_512_tokens_ascii_and_its_system_prompt(tmp_path: Path) -> None:
    resolved = resolve_settings(flags={"upsample": REFINER}, env={}, cwd=tmp_path)
    options = run_options(resolved.settings.upsample)
    assert (options.sampling.temperature, options.sampling.max_tokens) == (0.0, 512)
    assert options.sampling.ascii_only and options.plan.max_tokens == 512
    assert options.plan.system_prompt == REFINER_SYSTEM_PROMPT
    sources = {name: source for name, _, source in resolved.rows()}
    assert sources["upsample.temperature"] == "preset predict2-refiner"
    assert sources["upsample.preset"] == "flag"


def test_the_file_env_and_flags_win_over_the_preset(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[upsample]\npreset = "predict2-refiner"\nmax_tokens = 300\n', encoding="utf-8")
    env = {"COSMOS_ASCII_ONLY": "false"}
    flags = {"upsample": {"temperature": 0.2, "model": "tiny-random"}}
    resolved = resolve_settings(flags=flags, config_file=config, env=env, cwd=tmp_path)
    sampling = run_options(resolved.settings.upsample).sampling
    assert (sampling.max_tokens, sampling.ascii_only, sampling.temperature) == (300, False, 0.2)
    assert run_options(resolved.settings.upsample).plan.system_prompt == REFINER_SYSTEM_PROMPT


def test_without_a_preset_nothing_changes(tmp_path: Path) -> None:
    options = run_options(
        resolve_settings(flags={"upsample": {"model": "tiny-random"}}, env={}).settings.upsample
    )
    assert options.plan.system_prompt is None and not options.sampling.ascii_only
    assert "ascii_only" not in options.sampling.key()


def test_an_unknown_preset_is_one_line_naming_the_known_one() -> None:
    with pytest.raises(UsageError, match=r"preset = 'refiner' \(flag\).*'predict2-refiner'"):
        resolve_settings(flags={"upsample": {"preset": "refiner"}}, env={})


def test_a_system_prompt_file_replaces_the_presets(tmp_path: Path) -> None:
    mine = tmp_path / "system.txt"
    mine.write_text("  Describe the video in one short sentence.\n", encoding="utf-8")
    flags = {"upsample": {**REFINER, "system_prompt_file": mine}}
    settings = resolve_settings(flags=flags, env={}).settings.upsample
    assert plan_settings(settings).system_prompt == "Describe the video in one short sentence."


@pytest.mark.parametrize("kind", ["missing", "empty", "fifo", "large", "folder"])
def test_an_unusable_system_prompt_file_is_one_line(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "system.txt"
    if kind == "empty":
        path.write_text(" \n", encoding="utf-8")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "large":
        path.write_text("x" * (65 * 1024), encoding="utf-8")
    elif kind == "folder":
        path.mkdir()
    settings = resolve_settings(flags={"upsample": {"system_prompt_file": path}}, env={}).settings.upsample
    with pytest.raises(UsageError) as caught:
        plan_settings(settings)
    message = str(caught.value)
    assert f"system prompt file {path}" in message and "\n" not in message


def test_pixtral_counts_a_system_prompt_as_mistral_common_encodes_it() -> None:
    from mistral_common.protocol.instruct.chunk import ImageChunk, TextChunk
    from mistral_common.protocol.instruct.messages import SystemMessage, UserMessage
    from mistral_common.protocol.instruct.request import ChatCompletionRequest
    from PIL import Image

    tokenizer = load_tokenizer()
    family = family_for(None, REFINER_SYSTEM_PROMPT)
    rng = np.random.default_rng(1)
    for width, height, count in [(480, 272, 2), (272, 480, 1), (100, 37, 3), (0, 0, 0)]:
        frames = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]
        chunks = [ImageChunk(image=Image.fromarray(f)) for f in frames] + [TextChunk(text="A cat.")]
        request = ChatCompletionRequest(
            messages=[SystemMessage(content=REFINER_SYSTEM_PROMPT), UserMessage(content=chunks)]
        )
        theirs = tokenizer._tok.encode_chat_completion(request).tokens
        assert family.encode("A cat.", frames).token_ids == theirs
        assert family.encode("A cat.", frames, pixel_values=False).token_ids == theirs
        planned = family.text_tokens("A cat.") + family.vision_tokens(count, width, height)
        assert planned == len(theirs)
    assert family.text_tokens("A cat.") > family_for(None).text_tokens("A cat.")


def test_ascii_token_ids_keep_ascii_text_and_the_end_ids() -> None:
    texts = {0: "", 1: "a", 2: " the", 3: "é", 4: "\ufffd", 5: "日本", 6: "\n"}
    allowed = ascii_token_ids(texts.__getitem__, len(texts), keep=[0])
    assert allowed == frozenset({0, 1, 2, 6})


def test_postprocess_refuses_a_non_ascii_answer_when_ascii_only() -> None:
    answer = Generation(text="A café at dusk.", finish_reason="stop", prompt_tokens=5, completion_tokens=5)
    assert accept(answer, 512).problem is None
    refused = accept(answer, 512, ascii_only=True)
    assert refused.problem is not None and "'é'" in refused.problem
    plain = Generation(text="A cafe at dusk.", finish_reason="stop", prompt_tokens=5, completion_tokens=5)
    assert accept(plain, 512, ascii_only=True).problem is None
