"""Issue 6's 'done when': the openai engine upsamples the shipped examples against a loopback
OpenAI-compatible server backed by the tiny model, all through the real command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_shipped_examples_through_a_loopback_server(examples: Path, tmp_path: Path, tiny_model: Path) -> None:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cosmos_workflow.engines.openai_server",
            "--model",
            "tiny-random",
            "--port",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()
        assert banner.startswith("serving"), banner
        base_url = banner.split(" at ")[1].strip()
        assert base_url.startswith("http://127.0.0.1:")
        out = tmp_path / "openai.json"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "cosmos_workflow",
                "upsample-prompts",
                str(examples),
                "-o",
                str(out),
                "--engine",
                "openai",
                "--model",
                "tiny-random",
                "--engine-option",
                f"base_url={base_url}",
                "--seed",
                "5",
                "--quiet",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
        if server.stdout is not None:
            server.stdout.close()
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert [d["status"] for d in data] == ["ok", "ok", "ok", "text_only"]
    for d in data:
        assert d["engine"] == "openai" and d["finish_reason"] == "stop" and d["upsampled_prompt"]
        # the server re-tokenised the data-URL images: its prompt count must equal our plan
        assert d["prompt_tokens"] + d["max_tokens"] <= d["max_model_len"]
