"""Qwen2.5-VL-7B, the architecture of Cosmos-Reason1-7B (Cosmos-Predict2's prompt refiner), on one
GPU with random weights (issue 25, item 4): our batched hf path against the batch-1 way
Cosmos-Predict2 runs it (one prompt at a time through transformers' ``generate``).

Run from the repository root on a CUDA machine::

    python benchmarks/gpu_qwen.py --out /tmp/qwen          # --size tiny runs it on a CPU

What it does, in one process, on one model built on the device (random bf16 weights, no disk):

1. writes a checkpoint folder without weights (Qwen2.5-VL-7B's ``config.json`` with the tiny
   tokenizer's ids, the tiny Qwen tokenizer and chat template, the refiner's preprocessor limits:
   256x28x28 to 1280x28x28 pixels) and builds the model from that config on the GPU;
2. generates ``--videos`` 1280x720 clips and ``--requests`` items with 10-40-word prompts, planned
   by our Qwen2.5-VL arithmetic at the default 480-pixel long side (2 frames at 616x364: 288 vision
   tokens, start and end included);
3. **baseline**: ``--baseline-requests`` items one at a time (batch 1), transformers' ``generate``;
4. **main**: every item through the real runner (``api.upsample``) in batches of ``--batch-size``.

Both answer with exactly ``--max-tokens`` tokens (engine option ``ignore_eos``: random weights
would stop at random places), greedy. It prints a summary and writes ``results.json`` into ``--out``.

``--engine vllm`` (vLLM installed; the same folder, items and answers) runs two routes instead, each
in its own process (vLLM frees GPU memory only when its process ends), then one summary line:

- ``pipeline``: every item through our runner (``api.upsample``) on ``--engine vllm``, streamed,
  with ``load_format="dummy"`` (random weights): planning, video decoding and the journal timed;
  it records requests/s, the time to the first saved result, prompt-count mismatches (the runner's
  ``PROMPT_COUNT_MISMATCH`` warning: vLLM's reported prompt length against our plan) and context
  errors;
- ``bare``: vLLM as a user would call it: ``LLM.generate`` over every item at once, the prompt text
  from the chat template with one ``<|video_pad|>``, and the same frames our plan sends (its frames
  of each clip at its size) as a video, through vLLM's own processor with the checkpoint's settings
  (frames decoded beforehand, not timed).

Both plan at ``--max-resolution`` (480 by default, as the hf phases: 616x364, 288 vision tokens for
two frames; ``auto``: the processor's own 1288x728, 1,198).

``--route pipeline`` or ``--route bare`` runs one route alone (the folder and items must already be
in ``--out``: ``--engine vllm`` writes them first). Where vLLM cannot be imported (a CPU machine),
everything up to that point runs and one line says so.
"""

from __future__ import annotations

import time

PROCESS_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_upsample import Results, make_items, renamed, run_phase, start_results, synchronize  # noqa: E402

from cosmos_workflow.engines.base import EngineConfig  # noqa: E402
from cosmos_workflow.engines.hf.qwen import HFQwenEngine  # noqa: E402
from cosmos_workflow.engines.tiny_qwen import PREPROCESSOR_CONFIG, tiny_qwen_config, write_tokenizer  # noqa: E402

#: Qwen2.5-VL-7B-Instruct's sizes (Cosmos-Reason1-7B's): a 28-layer 3584-wide decoder with 28 query
#: and 4 KV heads, a 32-block 1280-wide windowed vision tower merging 2x2 patches.
QWEN_7B_LAYERS = 28
QWEN_7B_TEXT = {
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": QWEN_7B_LAYERS,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]},
}
QWEN_7B_VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "out_hidden_size": 3584,
    "fullatt_block_indexes": [7, 15, 23, 31],
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", choices=("7b", "tiny"), default="7b")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--baseline-requests", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--engine", choices=("hf", "vllm"), default="hf")
    parser.add_argument("--route", choices=VLLM_ROUTES, help="--engine vllm: run one route in this process")
    parser.add_argument(
        "--max-resolution",
        default="480",
        help="--engine vllm: both routes' plan (480, as the hf phases; or auto)",
    )
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    return parser.parse_args(argv)


def model_config(size: str) -> Any:
    """The tiny Qwen's config (its token ids) at Qwen2.5-VL-7B's sizes, or as it is."""
    config = tiny_qwen_config()
    config.architectures = ["Qwen2_5_VLForConditionalGeneration"]  # vLLM picks its runner by this name
    if size == "7b":
        for key, value in QWEN_7B_TEXT.items():
            setattr(config.text_config, key, value)
        if getattr(config.text_config, "layer_types", None):  # one entry a layer, as the config checks
            kind = config.text_config.layer_types[0]
            config.text_config.layer_types = [kind] * QWEN_7B_LAYERS
        for key, value in QWEN_7B_VISION.items():
            setattr(config.vision_config, key, value)
    return config


def write_folder(folder: Path, config: Any) -> None:
    """Everything the family reads (config, tokenizer, preprocessor); the weights stay in memory."""
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    write_tokenizer(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2))


def build_engine(folder: Path, config: Any, results: Results) -> HFQwenEngine:
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    started = time.perf_counter()
    with device:
        model = Qwen2_5_VLForConditionalGeneration._from_config(
            config, dtype=dtype, attn_implementation="sdpa"
        )
    model = model.eval()
    synchronize()
    results["build"] = {
        "seconds": time.perf_counter() - started,
        "since_process_start_s": time.perf_counter() - PROCESS_START,
        "parameters": sum(p.numel() for p in model.parameters()),
        "allocated_gib": torch.cuda.memory_allocated() / 2**30 if cuda else None,
    }
    print(f"[build] {results['build']}", flush=True)
    engine_config = EngineConfig(engine="hf", model=str(folder), options={"ignore_eos": True})
    return HFQwenEngine(engine_config, model=model, checkpoint=folder)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.engine == "vllm":
        return vllm_main(args)
    import torch

    cuda = torch.cuda.is_available()
    results = start_results(args.out)
    config = model_config(args.size)
    folder = args.out / f"qwen2_5_vl-{args.size}-random"
    write_folder(folder, config)
    engine = build_engine(folder, config, results)
    items = make_items(args.out / "videos", args.requests, args.videos, 1280, 720)
    common: dict[str, Any] = {
        "max_tokens": args.max_tokens,
        "workers": args.workers,
        "workdir": args.out,
        "sync": synchronize,
    }
    # the first request on a fresh process pays CUDA/cuBLAS start-up: keep it out of the baseline
    results["baseline_warmup"] = run_phase(
        "baseline-warmup", engine, renamed(items[:1], "bw-"), batch_size=1, **common
    )
    results["baseline"] = run_phase(
        "baseline", engine, renamed(items[: args.baseline_requests], "b-"), batch_size=1, **common
    )
    results.save()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    results["main"] = main_run = run_phase("main", engine, items, batch_size=args.batch_size, **common)
    if cuda:
        main_run["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
        main_run["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    results["speedup_vs_baseline"] = main_run["requests_per_s"] / results["baseline"]["requests_per_s"]
    results.save()
    print(
        f"SUMMARY {results['environment'].get('gpu', 'cpu')} Qwen2.5-VL-{args.size} random: main "
        f"{main_run['requests_per_s']:.3f} req/s ({main_run['output_tokens_per_s']:.0f} output tokens/s, "
        f"batch {args.batch_size}, {args.requests} requests, prompts {main_run['prompt_tokens']}), "
        f"baseline batch 1 {results['baseline']['requests_per_s']:.3f} req/s, "
        f"speedup {results['speedup_vs_baseline']:.1f}x; peak allocated "
        f"{main_run.get('peak_allocated_gib', float('nan')):.1f} GiB",
        flush=True,
    )
    engine.close()
    return 0


# --------------------------------------------------------------------------------------------
# --engine vllm: our pipeline on vLLM beside bare vLLM
# --------------------------------------------------------------------------------------------

VLLM_ROUTES = ("pipeline", "bare")
#: the exit status of a route whose vLLM cannot be imported
NO_VLLM = 3


def vllm_main(args: argparse.Namespace) -> int:
    """Write the folder and the items, then each route in its own process, then the summary."""
    folder = args.out / f"qwen2_5_vl-{args.size}-random"
    if args.route is not None:
        return run_route(args, folder)
    args.out.mkdir(parents=True, exist_ok=True)
    write_folder(folder, model_config(args.size))
    items = make_items(args.out / "videos", args.requests, args.videos, 1280, 720)
    rows = [{"name": i.name, "prompt": i.prompt, "video_path": str(i.video_path)} for i in items]
    (args.out / "prompts.json").write_text(json.dumps(rows))
    print(f"[prepare] {folder} and {len(items)} items in {args.out}", flush=True)
    for route in VLLM_ROUTES:
        command = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:], "--route", route]
        code = subprocess.run(command, check=False).returncode
        if code == NO_VLLM:
            return code
        if code != 0:
            print(f"[{route}] exited with status {code}", flush=True)
    figures = {
        r: json.loads(p.read_text()) for r in VLLM_ROUTES if (p := args.out / f"vllm-{r}.json").is_file()
    }
    print(vllm_summary(args, figures), flush=True)
    return 0 if len(figures) == len(VLLM_ROUTES) else 1


def run_route(args: argparse.Namespace, folder: Path) -> int:
    try:
        import vllm
    except Exception as exc:  # missing, or built for another torch/CUDA
        print(
            f"VLLM UNAVAILABLE: vllm cannot be imported ({type(exc).__name__}: {exc}); "
            "install the vLLM bundle (vLLM 0.26.0) and rerun",
            flush=True,
        )
        return NO_VLLM
    figures = pipeline_route(args, folder) if args.route == "pipeline" else bare_route(args, folder)
    figures["vllm"] = getattr(vllm, "__version__", None)
    (args.out / f"vllm-{args.route}.json").write_text(json.dumps(figures, indent=1, default=str))
    print(
        f"[{args.route}] " + json.dumps({k: v for k, v in figures.items() if not isinstance(v, dict | list)})
    )
    return 0


def pipeline_route(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    from cosmos_workflow.api import upsample
    from cosmos_workflow.config import RunOptions
    from cosmos_workflow.engines import SamplingParams, load_engine
    from cosmos_workflow.executors import LocalExecutor
    from cosmos_workflow.runner import PROMPT_COUNT_MISMATCH
    from cosmos_workflow.specs.batch import load_batch

    options = {
        "ignore_eos": True,
        "load_format": "dummy",
        "gpu_memory_utilization": args.gpu_memory_utilization,
    }
    config = EngineConfig(engine="vllm", model=str(folder), max_images_per_prompt=2, options=options)
    engine = load_engine(config)
    started_s = time.perf_counter() - PROCESS_START
    run = RunOptions(
        plan=plan_settings(args),
        sampling=SamplingParams(max_tokens=args.max_tokens),
        engine=engine.config,
        batch_size="auto",
        workers=args.workers,
        force=True,
    )
    first: list[float] = []
    started = time.perf_counter()
    result = upsample(
        load_batch(args.out / "prompts.json").items,
        run,
        output=args.out / "vllm-pipeline-records.json",
        executor=LocalExecutor(engine),
        on_saved=lambda _: first.append(time.perf_counter() - started),
    )
    seconds = time.perf_counter() - started
    records = result.records
    prompts = [r.prompt_tokens for r in records]
    completions = [r.completion_tokens for r in records]
    answered = [r for r in records if r.finish_reason in ("stop", "length")]
    engine.close()
    return {
        **route_figures(
            "our pipeline, --engine vllm (planning, decoding, journal included)",
            started_s,
            seconds,
            prompts,
            completions,
            first_result_s=first[0] if first else None,
        ),
        "frame_sizes": sorted({f"{r.width}x{r.height}" for r in records}),
        "statuses": dict(result.counts),
        "count_mismatches": sum(PROMPT_COUNT_MISMATCH in (r.warning or "") for r in records),
        "context_errors": sum(
            "too long" in (r.error or "") or "maximum model length" in (r.error or "") for r in records
        ),
        # ignore_eos makes every answer max_tokens long, which the pipeline then refuses as cut off
        # (status "error", as in gpu_vllm.py): what counts is that each one got all its max_tokens
        "answered": len(answered),
        "cut_short": sum(r.completion_tokens != args.max_tokens for r in answered),
    }


def bare_route(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    from vllm import LLM
    from vllm import SamplingParams as VLLMSampling

    from cosmos_workflow.engines.vllm_qwen import takes_video_metadata, video_item
    from cosmos_workflow.families import family_for
    from cosmos_workflow.media import probe_video, read_frames
    from cosmos_workflow.planner import plan_item

    rows = json.loads((args.out / "prompts.json").read_text())
    clips: dict[str, Any] = {}
    for path in sorted({r["video_path"] for r in rows}):  # the frames our plan sends, at its size
        info = probe_video(Path(path))
        plan = plan_item("clip", "", info, plan_settings(args), family_for(str(folder)))
        frames = read_frames(info, plan.frame_indices, (plan.width or 0, plan.height or 0))
        clips[path] = video_item(frames, 1 / info.fps, video_metadata=takes_video_metadata())
    llm = LLM(
        model=str(folder),
        load_format="dummy",
        max_model_len=4096,
        limit_mm_per_prompt={"image": 1, "video": 1},
        gpu_memory_utilization=args.gpu_memory_utilization,
        enable_prefix_caching=True,
        seed=0,
    )
    started_s = time.perf_counter() - PROCESS_START
    tokenizer = llm.get_tokenizer()
    prompts = [
        {
            "prompt": tokenizer.apply_chat_template(
                [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": r["prompt"]}]}],
                tokenize=False,
                add_generation_prompt=True,
            ),
            "multi_modal_data": {"video": clips[r["video_path"]]},
        }
        for r in rows
    ]
    params = VLLMSampling(temperature=0.0, max_tokens=args.max_tokens, ignore_eos=True)
    started = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    seconds = time.perf_counter() - started
    lengths = [len(o.prompt_token_ids) for o in outputs]
    completions = [len(o.outputs[0].token_ids) for o in outputs]
    # LLM.generate returns every answer at once: the first result is the last
    return route_figures(
        "bare vLLM (LLM.generate, our plan's frames as a video, its own processor)",
        started_s,
        seconds,
        lengths,
        completions,
        first_result_s=seconds,
    )


def route_figures(
    route: str,
    started_s: float,
    seconds: float,
    prompts: Sequence[int],
    completions: Sequence[int],
    *,
    first_result_s: float | None,
) -> dict[str, Any]:
    """The figures both vLLM routes report: requests/s, tokens/s, first and last result, ranges."""
    return {
        "route": route,
        "start_s": started_s,
        "requests": len(prompts),
        "seconds": seconds,
        "requests_per_s": len(prompts) / seconds,
        "output_tokens_per_s": sum(completions) / seconds,
        "first_result_s": first_result_s,
        "last_result_since_process_start_s": time.perf_counter() - PROCESS_START,
        "prompt_tokens": [min(prompts), max(prompts)],
        "completion_tokens": [min(completions), max(completions)],
    }


def plan_settings(args: argparse.Namespace) -> Any:
    from cosmos_workflow.planner import PlanSettings

    resolution = args.max_resolution if args.max_resolution == "auto" else int(args.max_resolution)
    return PlanSettings(max_tokens=args.max_tokens, max_resolution=resolution)


def vllm_summary(args: argparse.Namespace, figures: dict[str, dict[str, Any]]) -> str:
    parts = [
        f"SUMMARY vLLM Qwen2.5-VL-{args.size} random, {args.requests} requests, {args.max_tokens} tokens:"
    ]
    for route, f in figures.items():
        parts.append(
            f"{route} {f['requests_per_s']:.2f} req/s ({f['output_tokens_per_s']:.0f} output tokens/s, "
            f"first result {f['first_result_s'] or float('nan'):.1f} s, prompts {f['prompt_tokens']}"
            + (
                f", mismatches {f['count_mismatches']}, context errors {f['context_errors']}, "
                f"statuses {f['statuses']})"
                if route == "pipeline"
                else ")"
            )
        )
    if len(figures) == len(VLLM_ROUTES):
        share = figures["pipeline"]["requests_per_s"] / figures["bare"]["requests_per_s"]
        parts.append(f"pipeline/bare {share:.0%}")
    return " ".join(parts)


if __name__ == "__main__":
    raise SystemExit(main())
