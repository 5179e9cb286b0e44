"""Data-parallel scaling: the same requests through 1 rank and through N torchrun ranks, hf engine.

The model is Pixtral-12B's full-size architecture (Mistral-NeMo 12B decoder + Pixtral vision
encoder, ~12.7B parameters, bf16) with random weights, built directly on each rank's GPU: no
checkpoint exists on the GPU machines, and writing then reading 25 GB would time the disk, not the
GPUs. Random weights rarely emit EOS, so every request generates the full ``max_tokens``: the
workload is the same in both runs (records end as status ``error``/``fallback``: cut off).

Driven by ``benchmarks/gpu_multi.sh``; the steps can also be run by hand::

    python benchmarks/gpu_multi.py prepare WORKDIR --items 128
    python benchmarks/gpu_multi.py run WORKDIR/prompts.json WORKDIR/r1/out.json          # one rank
    torchrun --standalone --nproc_per_node=2 benchmarks/gpu_multi.py run \
        WORKDIR/prompts.json WORKDIR/r2/out.json
    python benchmarks/gpu_multi.py report WORKDIR/r1/out.json WORKDIR/r2/out.json

``--arch tiny`` uses the tiny architecture instead, on CPU: a smoke test of the script itself.

Timing: each rank writes ``<out>.timing.rank<R>.json`` with wall-clock times (one host, one clock):
process start, engine built, shard finished. Throughput counts from the *earliest* engine-built
time to the *latest* shard finished (so a rank that loads late counts against the N-rank run);
"total" adds process start-up and the model build.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

STARTED = time.time()
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for tests.videos, and the package when it is not installed

from cosmos_workflow.engines import ENGINES, EngineConfig  # noqa: E402
from cosmos_workflow.runner import RunOptions  # noqa: E402

ENGINE_NAME = "hf-random"
ARCHS = ("pixtral-12b", "tiny")
LOADED: dict[str, float] = {}


# --------------------------------------------------------------------------------------------
# The random full-size model, as an engine factory
# --------------------------------------------------------------------------------------------


def pixtral_12b_config() -> Any:
    """Pixtral-12B's published shape (params.json of mistralai/Pixtral-12B-2409)."""
    from transformers import LlavaConfig, MistralConfig, PixtralVisionConfig

    from cosmos_workflow.engines.tiny import BOS_ID, EOS_ID, IMAGE_ID, PAD_ID

    vision = PixtralVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=1024,
        patch_size=16,
        rope_theta=10000.0,
    )
    text = MistralConfig(
        vocab_size=131072,
        hidden_size=5120,
        intermediate_size=14336,
        num_hidden_layers=40,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=131072,
        rope_theta=1_000_000_000.0,
        rms_norm_eps=1e-5,
        sliding_window=None,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
    )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=IMAGE_ID,
        projector_hidden_act="gelu",
        vision_feature_layer=-1,
        multimodal_projector_bias=True,
        vision_feature_select_strategy="full",
    )


def load_random(config: EngineConfig) -> Any:
    """Engine factory (registered as ``hf-random``): random weights built on the rank's device."""
    import torch
    from transformers import LlavaForConditionalGeneration

    from cosmos_workflow.engines.hf import HFEngine, HFOptions, _pick_device
    from cosmos_workflow.engines.tiny import EOS_ID, PAD_ID, tiny_config

    device = _pick_device(config.device)
    cuda = device.type == "cuda"
    arch = pixtral_12b_config() if config.model == "pixtral-12b" else tiny_config()
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(
            arch, dtype=torch.bfloat16 if cuda else torch.float32
        )
    model.eval()
    model.generation_config.eos_token_id = EOS_ID
    model.generation_config.pad_token_id = PAD_ID
    if cuda:
        torch.cuda.synchronize(device)
    LOADED["at"] = time.time()
    params = sum(p.numel() for p in model.parameters())
    print(f"built {config.model}: {params / 1e9:.2f}B parameters on {device}", file=sys.stderr, flush=True)
    options = HFOptions.parse(config.options, cuda=cuda)
    return HFEngine(config, model=model, checkpoint=Path(f"{config.model}-random"), options=options)


ENGINES[ENGINE_NAME] = f"{__name__}:load_random"


# --------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------


def prepare(workdir: Path, items: int, videos: int) -> None:
    """Videos (720p H.264, different content) and a prompts file cycling through them."""
    from tests.videos import make_video

    workdir.mkdir(parents=True, exist_ok=True)
    clips = [make_video(workdir / f"v{n}.mp4", 1280, 720, frames=8, gop=4) for n in range(videos)]
    records = [
        {
            "name": f"req{n:04d}",
            "prompt": f"Scene {n}: a robot arm picks up object {n % 13} " + "and moves it " * (n % 7),
            "video_path": str(clips[n % videos]),
        }
        for n in range(items)
    ]
    (workdir / "prompts.json").write_text(json.dumps(records, indent=1))
    print(f"{items} requests over {videos} videos in {workdir / 'prompts.json'}")


def run(prompts: Path, output: Path, args: argparse.Namespace) -> None:
    """One rank (under torchrun) or the single process: upsample, then record the timing."""
    from cosmos_workflow import api
    from cosmos_workflow.parallel.torchrun import rank_info, run_distributed_if_needed

    options = bench_options(args)
    outcome = run_distributed_if_needed(prompts, output, options, None)
    if outcome is None:
        result, _ = api.upsample_file(prompts, output, options)
    else:
        result, _ = outcome
    info = rank_info()
    timing = {
        "rank": info.rank if info else 0,
        "world_size": info.world_size if info else 1,
        "process_start": STARTED,
        "engine_built": LOADED.get("at"),
        "finished": time.time(),
        "records": len(result.records),
        "completion_tokens": sum(r.completion_tokens for r in result.records),
    }
    path = output.with_name(f"{output.name}.timing.rank{timing['rank']}.json")
    path.write_text(json.dumps(timing))


def bench_options(args: argparse.Namespace) -> RunOptions:
    plan = {"max_resolution": args.max_resolution, "max_tokens": args.max_tokens, "num_frames": 2}
    return RunOptions(
        plan=plan,
        sampling={"max_tokens": args.max_tokens, "temperature": 0.6, "seed": 0},
        engine=EngineConfig(engine=ENGINE_NAME, model=args.arch, max_model_len=4096),
        batch_size=args.batch_size,
        on_error="original",
        clips_dir=None,
    )


def report(outputs: list[Path]) -> None:
    """Throughput per run, speed-up over the first, and the check that the item sets agree."""
    rows = [_summary(output) for output in outputs]
    base = rows[0]
    names = [json.loads(o.read_text()) for o in outputs]
    same = all(sorted(r["name"] for r in n) == sorted(r["name"] for r in names[0]) for n in names)
    once = all(len({r["name"] for r in n}) == len(n) for n in names)
    print("| ranks | requests | completion tokens | s (engine built -> done) | req/s | speed-up | total s |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        speedup = row["req_per_s"] / base["req_per_s"]
        print(
            f"| {row['ranks']} | {row['requests']} | {row['tokens']} | {row['seconds']:.1f} | "
            f"{row['req_per_s']:.3f} | {speedup:.2f}x | {row['total']:.1f} |"
        )
    print(f"\nsame items in every run: {same}; every item exactly once: {once}")


def _summary(output: Path) -> dict[str, Any]:
    timings = [
        json.loads(p.read_text()) for p in sorted(output.parent.glob(f"{output.name}.timing.rank*.json"))
    ]
    records = json.loads(output.read_text())
    built = min(t["engine_built"] for t in timings)
    done = max(t["finished"] for t in timings)
    return {
        "ranks": len(timings),
        "requests": len(records),
        "tokens": sum(r["completion_tokens"] for r in records),
        "seconds": done - built,
        "req_per_s": len(records) / (done - built),
        "total": done - min(t["process_start"] for t in timings),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    steps = parser.add_subparsers(dest="step", required=True)
    p = steps.add_parser("prepare")
    p.add_argument("workdir", type=Path)
    p.add_argument("--items", type=int, default=128)
    p.add_argument("--videos", type=int, default=8)
    r = steps.add_parser("run")
    r.add_argument("prompts", type=Path)
    r.add_argument("output", type=Path)
    r.add_argument("--arch", choices=ARCHS, default="pixtral-12b")
    r.add_argument("--batch-size", type=int, default=32)
    r.add_argument("--max-tokens", type=int, default=300)
    r.add_argument("--max-resolution", type=int, default=480)
    s = steps.add_parser("report")
    s.add_argument("outputs", type=Path, nargs="+")
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.workdir, args.items, args.videos)
    elif args.step == "run":
        run(args.prompts, args.output, args)
    else:
        report(args.outputs)


if __name__ == "__main__":
    main()
