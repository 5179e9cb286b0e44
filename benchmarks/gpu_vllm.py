"""vLLM beside the hf engine on one GPU (issue 22): the same requests through three routes.

Run on the GPU machine from the repository root, vLLM installed (``benchmarks/vllm_install.sh``)::

    bash benchmarks/gpu_vllm.sh OUT_DIR [REQUESTS]        # every phase, then the table

Each phase is its own process (a GPU engine's memory is only freed when its process ends):

- ``prepare``: ``--videos`` 1280x720 H.264 clips and ``--requests`` items with 10-40-word prompts
  (the same generator as ``gpu_upsample.py``), written as a prompts file; the first two frames of
  each clip at 480x272 as PNG data URIs, for bare vLLM;
- ``bare``: vLLM as a user would call it: ``LLM.chat`` over every conversation at once (two
  ``image_url`` frames, then the prompt), frames already extracted (not timed);
- ``vllm`` and ``hf``: our pipeline, ``api.upsample`` on a loaded engine: planning, video decoding,
  encoding, generation and the journal, all timed; then, on the same engine, the boundary set:
  1080p and portrait sources planned with ``--max-resolution auto`` (requests right under the
  4,096-token limit) and text-only items, each checked for exactness (the prompt length vLLM
  reports equals the planned one; no context errors; every answer ``max_tokens`` long);
- ``table``: one table from the phases' JSON files.

Every route: Pixtral-12B's full-size architecture with random bf16 weights (vLLM: a Mistral-format
folder with ``load_format="dummy"``; hf: built on the GPU), 300-token answers (``ignore_eos``:
random weights would stop anywhere), temperature 0.6, ``max_model_len`` 4096,
``gpu_memory_utilization`` 0.9 for both vLLM routes. Peak GPU memory is the device's (nvidia-smi,
every 0.5 s), so it counts vLLM's engine process too.
"""

from __future__ import annotations

import time

PROCESS_START = time.perf_counter()  # before the heavy imports: start-up is measured from here

import argparse  # noqa: E402
import base64  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.gpu_upsample import (  # noqa: E402
    Ceilings,
    Shape,
    ceilings_of,
    make_items,
    make_prompt,
    roofline,
)
from cosmos_workflow.specs.batch import BatchItem, load_batch  # noqa: E402

MODEL = "pixtral-12b-random"
MAX_TOKENS = 300
TEMPERATURE = 0.6
GPU_MEMORY = 0.9


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


class PeakMemory:
    """The device's highest memory use (MiB) while the block runs, read by nvidia-smi."""

    def __init__(self) -> None:
        self.peak_mib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        if shutil.which("nvidia-smi") is None:
            return  # a CPU smoke test
        query = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"]
        while not self._stop.wait(0.5):
            out = subprocess.run(query, capture_output=True, text=True, check=False).stdout.strip()
            if out.isdigit():
                self.peak_mib = max(self.peak_mib, int(out))


def since_start() -> float:
    return time.perf_counter() - PROCESS_START


def save(out: Path, name: str, figures: dict[str, Any]) -> None:
    (out / f"{name}.json").write_text(json.dumps(figures, indent=2))
    print(f"[{name}] " + json.dumps({k: v for k, v in figures.items() if not isinstance(v, dict | list)}))


# --------------------------------------------------------------------------------------------
# prepare
# --------------------------------------------------------------------------------------------


def prepare(out: Path, requests: int, videos: int, boundary: int) -> None:
    items = make_items(out / "videos", requests, videos, 1280, 720)
    rows = [{"name": i.name, "prompt": i.prompt, "video_path": str(i.video_path)} for i in items]
    (out / "prompts.json").write_text(json.dumps(rows))
    frames = {str(v): _data_uris(Path(v)) for v in sorted({str(i.video_path) for i in items})}
    (out / "frames.json").write_text(json.dumps(frames))
    (out / "boundary.json").write_text(json.dumps(_boundary_rows(out / "videos", boundary)))
    print(f"[prepare] {len(items)} items over {len(frames)} clips in {out}")


def _data_uris(video: Path) -> list[str]:
    """The clip's first two frames at 480x272 (the size our plan picks), as PNG data URIs."""
    import av

    with av.open(str(video)) as container:
        decoded = [f.to_image() for _, f in zip(range(2), container.decode(video=0), strict=False)]
    uris = []
    for image in decoded:
        buffer = io.BytesIO()
        image.resize((480, 272)).save(buffer, format="PNG")
        uris.append("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode())
    return uris


def _boundary_rows(folder: Path, count: int) -> list[dict[str, Any]]:
    """Sources that ``--max-resolution auto`` plans right under the limit, and text-only items."""
    import numpy as np

    from tests.videos import make_video

    sources = [
        make_video(folder / "fullhd.mp4", 1920, 1080, frames=4),
        make_video(folder / "portrait.mp4", 1080, 1920, frames=4),
        make_video(folder / "square.mp4", 1440, 1440, frames=4),
    ]
    rng = np.random.default_rng(11)
    rows: list[dict[str, Any]] = []
    for i in range(count):
        # prompts from 10 to ~400 words, so the planned totals land at many distances from 4,096
        prompt = " ".join(make_prompt(rng) for _ in range(1 + i % 12))
        video = str(sources[i % 3]) if i % 4 else None
        rows.append({"name": f"edge{i:02d}", "prompt": prompt, "video_path": video})
    return rows


# --------------------------------------------------------------------------------------------
# bare vLLM
# --------------------------------------------------------------------------------------------


def bare(out: Path, name: str, *, again: bool = False) -> None:
    from vllm import LLM, SamplingParams

    from cosmos_workflow.engines.vllm import random_12b_folder

    items = json.loads((out / "prompts.json").read_text())
    frames = json.loads((out / "frames.json").read_text())
    conversations = [_conversation(frames[i["video_path"]], i["prompt"]) for i in items]
    with PeakMemory() as memory:
        llm = LLM(
            model=str(random_12b_folder()),
            tokenizer_mode="mistral",
            config_format="mistral",
            load_format="dummy",
            max_model_len=4096,
            limit_mm_per_prompt={"image": 2},
            gpu_memory_utilization=GPU_MEMORY,
            enable_prefix_caching=True,
            seed=0,
        )
        built = since_start()
        params = SamplingParams(temperature=TEMPERATURE, max_tokens=MAX_TOKENS, ignore_eos=True)
        started = time.perf_counter()
        outputs = llm.chat(conversations, params, use_tqdm=False)
        seconds = time.perf_counter() - started
        done = since_start()
        if again:
            llm.reset_prefix_cache()  # the second pass finds no prompt of the first in the cache
            started = time.perf_counter()
            second = llm.chat(conversations, params, use_tqdm=False)
            again_s = time.perf_counter() - started
    save(
        out,
        name,
        {
            "route": "bare vLLM (LLM.chat, frames extracted beforehand)",
            "start_s": built,
            **_bare_figures(outputs, seconds),
            "first_result_s": seconds,  # LLM.chat returns every answer at once
            "last_result_since_process_start_s": done,
            "peak_gpu_mib": memory.peak_mib,
            "vllm": _version("vllm"),
        },
    )
    if again:
        route = "bare vLLM (prefix cache reset)"
        save(out, f"{name}-again", _second_pass(route, _bare_figures(second, again_s), memory.peak_mib))


def _bare_figures(outputs: Sequence[Any], seconds: float) -> dict[str, Any]:
    """A pass of ``LLM.chat``: its rates and its prompt and answer lengths."""
    prompts = [len(o.prompt_token_ids) for o in outputs]
    completions = [len(o.outputs[0].token_ids) for o in outputs]
    return {
        "requests": len(outputs),
        "generate_s": seconds,
        "requests_per_s": len(outputs) / seconds,
        "output_tokens_per_s": sum(completions) / seconds,
        "prompt_tokens": [min(prompts), max(prompts)],
        "completion_tokens": [min(completions), max(completions)],
    }


def _second_pass(route: str, figures: dict[str, Any], peak_mib: int) -> dict[str, Any]:
    """A route's second pass over the same requests in the same process (``--again``): its engine
    compiled for them, as vLLM's is when its first pass starts."""
    return {"route": f"{route}, second pass (engine compiled)", **figures, "peak_gpu_mib": peak_mib}


def _conversation(uris: Sequence[str], prompt: str) -> list[dict[str, Any]]:
    images = [{"type": "image_url", "image_url": {"url": uri}} for uri in uris]
    return [{"role": "user", "content": [*images, {"type": "text", "text": prompt}]}]


# --------------------------------------------------------------------------------------------
# our pipeline
# --------------------------------------------------------------------------------------------


def pipeline(
    out: Path,
    engine_name: str,
    workers: int,
    model: str,
    *,
    name: str,
    compile_cache: Path | None,
    engine_options: dict[str, str | int | float | bool | None],
    first_batch: int = 0,
    boundary: bool = True,
    again: bool = False,
) -> None:
    from cosmos_workflow.api import tokenizer_for
    from cosmos_workflow.engines import EngineConfig, load_engine

    options: dict[str, str | int | float | bool | None] = {"ignore_eos": True, **engine_options}
    ceilings: dict[str, Ceilings] = {}
    if engine_name == "hf":
        # a folder of kernels compiled by an earlier run is a warm start; empty (the default), a cold one
        options["compile_cache"] = str(compile_cache or out / "hf-compile-cache")
        ceilings = card_ceilings()
    lines = BatchLines()
    with PeakMemory() as memory:
        engine = load_engine(EngineConfig(engine=engine_name, model=model, options=options))
        tokenizer_for(model)  # loaded once at start-up, as the CLI does; upsample() finds it cached
        built = since_start()
        items = load_batch(out / "prompts.json").items
        with lines:
            main = _timed_run(out, engine, items, workers, name=name, first_batch=first_batch)
        main["last_result_since_process_start_s"] = since_start()
        if engine_name == "hf":
            main["batches"] = batch_rooflines(lines.batches(), Shape.of(engine._model), ceilings)
        if again:
            second = BatchLines()
            with second:
                repeat = _timed_run(
                    out, engine, items, workers, name=f"{name}-again", first_batch=first_batch
                )
            if engine_name == "hf":
                repeat["batches"] = batch_rooflines(second.batches(), Shape.of(engine._model), ceilings)
        # the boundary set: requests right under the context limit, on the same engine (skipped for
        # runs about start-up, where its new shapes would only cost device time)
        edge = (
            _timed_run(
                out,
                engine,
                load_batch(out / "boundary.json").items,
                workers,
                name=f"{name}-boundary",
                auto=True,
            )
            if boundary
            else None
        )
    save(
        out,
        name,
        {
            "route": f"our pipeline, --engine {engine_name} (planning, decoding, journal included)",
            "engine_options": engine_options,
            "first_batch": first_batch,
            "start_s": built,
            **main,
            **({"boundary": edge} if edge else {}),
            "peak_gpu_mib": memory.peak_mib,
            "vllm": _version("vllm") if engine_name == "vllm" else None,
            # False where share_prefix was asked for and the engine fell back to unshared decoding
            "shares_prefixes_at_end": engine.shares_prefixes,
        },
    )
    if again:
        save(out, f"{name}-again", _second_pass(f"--engine {engine_name}", repeat, memory.peak_mib))


def card_ceilings() -> dict[str, Ceilings]:
    """The card's ceilings (datasheet, and measured on a GPU), before the engine takes its memory."""
    import torch

    cuda = torch.cuda.is_available()
    ceilings = ceilings_of(torch.cuda.get_device_name() if cuda else "", cuda)
    print(f"[ceilings] {json.dumps({k: vars(v) for k, v in ceilings.items()})}", flush=True)
    return ceilings


class BatchLines(logging.Handler):
    """The hf engine's per-batch lines (sharing, prefill and step times, engine seconds) while
    the block runs, parsed into one dict a batch."""

    SHARE = re.compile(r"hf engine: (\d+) requests share (\d+) prefixes \((\d+) prompt tokens")
    TIMING = re.compile(
        r"hf batch timing: (\d+) rows x \d+ prompt columns, prefill ([\d.]+) s, first step ([\d.]+) s, "
        r"then (\d+) steps of ([\d.]+) ms"
    )
    DONE = re.compile(r"hf engine on \S+: (\d+) requests, (\d+) prompt tokens, ([\d.]+) s")

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> BatchLines:
        logging.getLogger("cosmos_workflow").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("cosmos_workflow").removeHandler(self)

    def batches(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        current: dict[str, Any] = {}
        for message in self.messages:
            if share := self.SHARE.search(message):
                current = {"prefixes": int(share[2]), "shared_tokens": int(share[3])}
            elif timing := self.TIMING.search(message):
                current |= {
                    "prefill_s": float(timing[2]),
                    "first_step_s": float(timing[3]),
                    "steps": int(timing[4]),
                    "step_ms": float(timing[5]),
                }
            elif done := self.DONE.search(message):
                current |= {
                    "requests": int(done[1]),
                    "prompt_tokens": int(done[2]),
                    "engine_s": float(done[3]),
                }
                found.append(current)
                current = {}
        return found


def compiled_batch_s(batch: dict[str, Any]) -> float:
    """The batch's engine seconds with its first decoding step (which compiles, or loads the
    compiled step, and records its CUDA graphs when its shape is new to the process) at the pace
    of the steps after it."""
    first = batch.get("first_step_s", 0.0)
    return float(batch["engine_s"]) - first + (batch["step_ms"] / 1000 if first else 0.0)


def batch_rooflines(
    batches: Sequence[dict[str, Any]], shape: Shape, ceilings: dict[str, Ceilings]
) -> list[dict[str, Any]]:
    """Each batch's measured prefill, step and batch seconds against its roofline (compute and memory,
    each prefix counted once where the batch shares them), per set of ceilings."""
    patches = 2 * (272 // 16) * (480 // 16)  # two 480x272 frames of 16-px patches
    rows = []
    for batch in batches:
        requests, groups = batch["requests"], batch.get("prefixes", 0)
        prompt = batch["prompt_tokens"] / requests
        prefix = batch.get("shared_tokens", 0) / (requests - groups) if requests > groups else 0
        row = dict(batch)
        for name, ceiling in ceilings.items():
            line = roofline(
                shape,
                [round(prompt)] * requests,
                patches,
                MAX_TOKENS,
                ceiling,
                prefix=round(prefix),
                groups=groups,
            )
            row[name] = {
                "ideal_batch_s": line["batch_s"],
                "ideal_prefill_s": line["prefill_s"],
                "ideal_step_ms": 1000 * line["decode_step_s"],
                "decode_bound": line["decode_bound"],
                "batch_fraction": line["batch_s"] / batch["engine_s"],
                # the batch as it runs once its step is compiled: the first step at the later steps' pace
                "batch_fraction_compiled": line["batch_s"] / compiled_batch_s(batch),
                "prefill_fraction": line["prefill_s"] / batch["prefill_s"] if "prefill_s" in batch else None,
                "step_fraction": line["decode_step_s"] * 1000 / batch["step_ms"]
                if "step_ms" in batch
                else None,
            }
        rows.append(row)
        print(f"[batch] {json.dumps(row)}", flush=True)
    return rows


def _timed_run(
    out: Path,
    engine: Any,
    items: Sequence[BatchItem],
    workers: int,
    *,
    name: str,
    auto: bool = False,
    first_batch: int = 0,
) -> dict[str, Any]:
    from cosmos_workflow.api import upsample
    from cosmos_workflow.config import RunOptions
    from cosmos_workflow.engines import SamplingParams
    from cosmos_workflow.executors import LocalExecutor
    from cosmos_workflow.planner import PlanSettings
    from cosmos_workflow.runner import PROMPT_COUNT_MISMATCH

    options = RunOptions(
        plan=PlanSettings(max_tokens=MAX_TOKENS, max_resolution="auto" if auto else 480),
        sampling=SamplingParams(max_tokens=MAX_TOKENS, temperature=TEMPERATURE),
        engine=engine.config,
        batch_size="auto",
        first_batch=first_batch,
        workers=workers,
        force=True,
    )
    first: list[float] = []
    started = time.perf_counter()
    on_saved: Callable[[Sequence[Any]], None] = lambda _: first.append(time.perf_counter() - started)  # noqa: E731
    result = upsample(
        items, options, output=out / f"{name}-records.json", executor=LocalExecutor(engine), on_saved=on_saved
    )
    seconds = time.perf_counter() - started
    records = result.records
    answered = [r for r in records if r.finish_reason in ("stop", "length")]
    completions = [r.completion_tokens for r in records]
    prompts = [r.prompt_tokens for r in records]
    return {
        "requests": len(records),
        "generate_s": seconds,
        "requests_per_s": len(records) / seconds,
        "output_tokens_per_s": sum(completions) / seconds,
        "first_result_s": first[0] if first else None,
        "prompt_tokens": [min(prompts), max(prompts)],
        "completion_tokens": [min(completions), max(completions)],
        "statuses": dict(result.counts),
        "count_mismatches": sum(PROMPT_COUNT_MISMATCH in (r.warning or "") for r in records),
        "context_errors": sum(
            "too long" in (r.error or "") or "maximum model length" in (r.error or "") for r in records
        ),
        # ignore_eos makes every answer max_tokens long, which the pipeline then refuses as cut off
        # (status "error"): what counts here is that each one got all of its max_tokens
        "answered": len(answered),
        "cut_short": sum(r.completion_tokens != MAX_TOKENS for r in answered),
        "text_only": sum(r.status == "text_only" for r in records),
        "largest_plan": max(r.prompt_tokens + r.max_tokens for r in records),
    }


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


# --------------------------------------------------------------------------------------------
# table
# --------------------------------------------------------------------------------------------

ROWS = (
    ("requests/s", "requests_per_s", "{:.2f}"),
    ("output tokens/s", "output_tokens_per_s", "{:,.0f}"),
    ("time to the first result (s)", "first_result_s", "{:.1f}"),
    ("start-up: process start to engine ready (s)", "start_s", "{:.1f}"),
    ("process start to the last result (s)", "last_result_since_process_start_s", "{:.1f}"),
    ("peak GPU memory (GiB, device)", "peak_gpu_gib", "{:.1f}"),
    ("prompt tokens (min-max)", "prompt_range", "{}"),
    ("hf batches: roofline / engine time (datasheet, measured ceilings)", "roofline", "{}"),
    ("hf batches: the same, first step at the later steps' pace", "roofline_compiled", "{}"),
    ("hf batches: first decoding steps (s; compile, graphs)", "first_steps_s", "{:.1f}"),
)


def _roofline_share(batches: Sequence[dict[str, Any]], *, compiled: bool = False) -> str | None:
    """The batches' ideal seconds over their engine seconds (``compiled``: with each first step at
    the later steps' pace, :func:`compiled_batch_s`), against each set of ceilings."""
    if not batches:
        return None
    engine_s = sum(compiled_batch_s(b) if compiled else b["engine_s"] for b in batches)
    names = [n for n in ("datasheet", "measured") if n in batches[0]]
    return ", ".join(f"{sum(b[n]['ideal_batch_s'] for b in batches) / engine_s:.0%}" for n in names)


def table(out: Path) -> None:
    found = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if "records" not in p.stem}
    phases = {name: f for name, f in found.items() if isinstance(f, dict) and "route" in f}
    for figures in phases.values():
        figures["peak_gpu_gib"] = figures["peak_gpu_mib"] / 1024
        figures["prompt_range"] = "-".join(str(t) for t in figures["prompt_tokens"])
        batches = figures.get("batches", [])
        figures["roofline"] = _roofline_share(batches)
        figures["roofline_compiled"] = _roofline_share(batches, compiled=True)
        figures["first_steps_s"] = sum(b.get("first_step_s", 0.0) for b in batches) if batches else None
    lines = ["| figure | " + " | ".join(phases) + " |", "|---|" + "---:|" * len(phases)]
    for label, key, fmt in ROWS:
        cells = [fmt.format(f[key]) if f.get(key) is not None else "-" for f in phases.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if "bare" in phases and "vllm" in phases:
        share = phases["vllm"]["requests_per_s"] / phases["bare"]["requests_per_s"]
        lines.append(f"\nour --engine vllm / bare vLLM, requests/s: {share:.1%}")
    for name in phases:
        if "boundary" in phases[name]:
            checks = {
                k: phases[name][k] for k in ("count_mismatches", "context_errors", "cut_short", "statuses")
            }
            edge = phases[name]["boundary"]
            lines.append(f"{name}: {json.dumps(checks)}; boundary: {json.dumps(_exactness(edge))}")
    text = "\n".join(lines)
    (out / "table.md").write_text(text + "\n")
    print(text)


def _exactness(edge: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "requests",
        "count_mismatches",
        "context_errors",
        "cut_short",
        "text_only",
        "largest_plan",
        "statuses",
    )
    return {k: edge[k] for k in keys}


def _tagged(name: str, tag: str) -> str:
    return f"{name}-{tag}" if tag else name


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("phase", choices=("prepare", "bare", "vllm", "hf", "table"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=1024)
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--boundary", type=int, default=48, help="items of the boundary set")
    parser.add_argument("--workers", type=int, default=8, help="preprocessing threads of our pipeline")
    parser.add_argument("--model", default=MODEL, help="our pipeline's model (tiny-random: a CPU smoke test)")
    parser.add_argument("--name", help="the results file's name for vllm/hf/bare (default: the phase's)")
    parser.add_argument(
        "--tag", default="", help="appended to the results file's name after a dash, e.g. layers"
    )
    parser.add_argument("--compile-cache", type=Path, help="hf: kernels compiled before (a warm start)")
    parser.add_argument("--first-batch", type=int, default=0, help="hf: the first batch's size (0: evened)")
    parser.add_argument("--skip-boundary", action="store_true", help="vllm/hf: no boundary set after the run")
    parser.add_argument(
        "--again",
        action="store_true",
        help="bare/vllm/hf: a second pass of the same requests in the same process, its figures apart "
        "(NAME-again): every engine compiled, as vLLM is when its first pass starts",
    )
    parser.add_argument(
        "--engine-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="vllm/hf: an engine option of our pipeline, e.g. share_prefix=true (repeatable)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.phase == "prepare":
        prepare(args.out, args.requests, args.videos, args.boundary)
    elif args.phase == "bare":
        bare(args.out, _tagged(args.name or "bare", args.tag), again=args.again)
    elif args.phase == "table":
        table(args.out)
    else:
        from cosmos_workflow.cli.options import parse_engine_options  # as the CLI reads --engine-option

        # the engines' per-batch lines (hf: prefill seconds, step milliseconds) for the roofline
        logging.basicConfig(format="%(asctime)s %(name)s: %(message)s")
        logging.getLogger("cosmos_workflow").setLevel(logging.INFO)

        pipeline(
            args.out,
            args.phase,
            args.workers,
            args.model,
            name=_tagged(args.name or args.phase, args.tag),
            compile_cache=args.compile_cache,
            engine_options=parse_engine_options(args.engine_option),
            first_batch=args.first_batch,
            boundary=not args.skip_boundary,
            again=args.again,
        )


if __name__ == "__main__":
    main()
