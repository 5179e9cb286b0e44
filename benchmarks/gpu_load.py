"""How fast a checkpoint's weights reach the GPU (issue 26, item 3: "the weights read at disk speed").

Run from the repository root on the GPU machine::

    python benchmarks/gpu_load.py --out /tmp/load                 # Pixtral-12B's architecture, ~25 GB
    python benchmarks/gpu_load.py --out /tmp/load --model tiny --device cpu    # CPU smoke run (no figure)

1. Writes the model, with random weights, as a Hugging Face checkpoint folder (``save_pretrained``:
   config.json and safetensors shards) under ``--out``, unless it is there already (``--model 12b``
   builds Pixtral-12B's architecture on the GPU, as ``pixtral-12b-random`` does).
2. Runs each route in a process of its own, the shards evicted from the page cache first
   (``posix_fadvise(DONTNEED)``; the page cache would otherwise serve a second read from memory),
   ``--repeats`` times:

   - ``read``: the shards read end to end in 64 MiB pieces: the disk's rate, the floor for any load;
   - ``to_device``: ``from_pretrained`` into host memory, then ``.to(device)`` (the hf engine's
     load: ``engines/hf/device.load_pretrained``);
   - ``device_map``: ``from_pretrained(device_map=device)``: each tensor placed on the device as
     it is read; transformers needs ``accelerate`` for it (not a dependency of ours: the route is
     skipped without it, and this figure decides whether it becomes one);
   - ``engine``: ``load_engine`` with ``--engine hf --model FOLDER``: what a user's run pays,
     tokenizer and the engine's patches included.

   Each reports seconds from just before the load to the model on the device (torch and
   transformers imported beforehand), GB/s of checkpoint, and the process' peak host memory (``ru_maxrss``).

Writes ``results.json`` into ``--out`` and prints one line per route.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROUTES = ("read", "to_device", "device_map", "engine")
PIECE = 64 * 1024 * 1024


def shards(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def evict(files: list[Path]) -> None:
    """Drop the files' pages from the page cache, so the next read comes from the disk."""
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def write_checkpoint(folder: Path, model: str, device: str) -> None:
    """Random weights saved as a Hugging Face checkpoint folder (skipped when it is complete)."""
    if (folder / "config.json").is_file() and shards(folder):
        return
    import torch

    from cosmos_workflow.engines.tiny import build_random_model, pixtral_12b_config, tiny_config

    config = pixtral_12b_config() if model == "12b" else tiny_config()
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    built = build_random_model(config, torch.device(device), dtype)
    started = time.perf_counter()
    built.save_pretrained(folder, max_shard_size="5GB")
    print(f"[write] {folder}: {size_gb(folder):.1f} GB in {time.perf_counter() - started:.1f} s", flush=True)


def size_gb(folder: Path) -> float:
    return sum(p.stat().st_size for p in shards(folder)) / 1e9


def route(name: str, folder: Path, device: str) -> dict[str, Any]:
    """One route, in this process (the parent starts one process per route and repeat)."""
    import torch
    from transformers import LlavaForConditionalGeneration

    from cosmos_workflow.engines import EngineConfig, load_engine

    files = shards(folder)
    evict(files)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    started = time.perf_counter()
    if name == "read":
        for path in files:
            with path.open("rb", buffering=0) as handle:
                while handle.read(PIECE):
                    pass
    elif name in ("to_device", "device_map"):
        if name == "to_device":
            model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=dtype).to(device)
        else:
            model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=dtype, device_map=device)
        assert str(next(model.parameters()).device).startswith(device.split(":")[0])
    else:
        load_engine(EngineConfig(engine="hf", model=str(folder), device=device)).close()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    return {"route": name, "seconds": seconds, "gb_per_s": size_gb(folder) / seconds, "peak_host_gb": peak_gb}


def has_accelerate() -> bool:
    try:
        import accelerate  # noqa: F401
    except ImportError:
        print("[device_map] skipped: transformers needs accelerate for device_map", flush=True)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", choices=("12b", "tiny"), default="12b")
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--routes", default=",".join(ROUTES), help="comma-separated, of " + ", ".join(ROUTES))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--route", help=argparse.SUPPRESS)  # the child's one route
    args = parser.parse_args(argv)
    folder = args.out / f"checkpoint-{args.model}"
    if args.route:
        print("RESULT", json.dumps(route(args.route, folder, args.device)), flush=True)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    write_checkpoint(folder, args.model, args.device)
    results: list[dict[str, Any]] = []
    routes = [name for name in args.routes.split(",") if name != "device_map" or has_accelerate()]
    for _ in range(args.repeats):
        for name in routes:
            command = [sys.executable, __file__, "--out", str(args.out), "--model", args.model]
            command += ["--device", args.device, "--route", name]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
            result = json.loads(line.removeprefix("RESULT "))
            results.append(result)
            print(
                f"[{name}] {result['seconds']:.2f} s, {result['gb_per_s']:.2f} GB/s, "
                f"peak host {result['peak_host_gb']:.1f} GB",
                flush=True,
            )
    summary = {"checkpoint_gb": size_gb(folder), "device": args.device, "results": results}
    (args.out / "results.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
