"""Answers are cleaned; empty or cut-off answers are never accepted."""

from __future__ import annotations

import pytest

from cosmos_workflow.engines import Generation
from cosmos_workflow.postprocess import accept, clean_text


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Here is the upsampled prompt: A wide shot of a city.", "A wide shot of a city."),
        ("Sure! Here's a detailed description:\n\nA forest at dawn.", "A forest at dawn."),
        ("Prompt: A red car.", "A red car."),
        ('"A quoted answer."', "A quoted answer."),
        ("\u201cCurly quotes.\u201d", "Curly quotes."),
        ("**Bold** and *italic* and `code`", "Bold and italic and code"),
        ("# Title\n- first point\n- second point", "Title first point second point"),
        ("<think>reasoning</think>The answer.", "The answer."),
        ("A line\nbroken   in\n\nparts", "A line broken in parts"),
        ('He said "hi" and left.', 'He said "hi" and left.'),
    ],
)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


def test_accepts_a_finished_answer() -> None:
    result = accept(
        Generation(text="A city.", finish_reason="stop", prompt_tokens=5, completion_tokens=3), 300
    )
    assert result.problem is None and result.text == "A city."


def test_cut_off_answer_is_refused_with_the_fix() -> None:
    result = accept(
        Generation(text="A city with", finish_reason="length", prompt_tokens=5, completion_tokens=300), 300
    )
    assert result.problem is not None and "cut off at max_tokens 300" in result.problem
    assert "--max-tokens" in result.problem


@pytest.mark.parametrize("text", ["", "   ", "<think>only thoughts</think>", '""'])
def test_empty_answer_is_refused(text: str) -> None:
    result = accept(Generation(text=text, finish_reason="stop", prompt_tokens=5, completion_tokens=1), 300)
    assert result.problem == "the model returned an empty answer"


def test_engine_failure_keeps_its_message() -> None:
    result = accept(Generation.failed("server said no", prompt_tokens=5), 300)
    assert result.problem == "server said no"
