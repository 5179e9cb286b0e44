"""--encoder-tokenizer / --encoder-limit from the command line: plan shows the limit; a run's
answers are counted with the encoder's tokenizer, a long one is generated again shorter, and the
records carry encoder_tokens."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.commands import cosmos
from tests.integration.test_encoder_limit import write_encoder_tokenizer


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return cosmos(*args, cwd=cwd)


def test_answers_fit_the_encoder_and_plan_shows_the_limit(tmp_path: Path) -> None:
    encoder = write_encoder_tokenizer(tmp_path / "t5")
    prompts = tmp_path / "prompts.json"
    prompts.write_text(
        json.dumps([{"name": "city", "prompt": "a city at night"}, {"name": "x", "prompt": "x"}])
    )
    limit = ["--encoder-tokenizer", str(encoder), "--encoder-limit", "60"]

    plan = cli("plan", str(prompts), "--json", *limit, cwd=tmp_path)
    run = cli(
        "upsample-prompts", str(prompts), "-o", "out.json", "--engine", "fake",
        "--engine-option", "answer_words=100", *limit, "-q", cwd=tmp_path,
    )  # fmt: skip

    assert plan.returncode == 0, plan.stderr
    assert {row["encoder_limit"] for row in json.loads(plan.stdout)} == {60}
    assert run.returncode == 0, run.stderr
    records = json.loads((tmp_path / "out.json").read_text())
    for record in records:
        assert record["status"] == "text_only" and record["attempts"] == 2
        assert record["encoder_tokens"] == len(record["upsampled_prompt"].split()) + 1 <= 60
    assert "over its limit 60" in run.stderr
