"""Dynamo's tracing of a decoding step: transformers' whole forward vs one layer function
(``decode_step=model`` vs ``layers``), on the CPU, the tiny model's layout with ``--layers`` layers.

Each mode runs in a process of its own (Dynamo's caches are per process): the engine on the tiny
random model prefills 4 requests and decodes one step through the compiled step, compiled with the
``eager`` backend (Dynamo traces; no kernels are generated, so the figure is the tracing alone, the
part of a GPU's first step that its compile cache cannot keep). It prints the process's compile
seconds (Dynamo's tracing, the backend) and the frames Dynamo compiled; then, in a third process,
the host time of one call of the layer function compiled by Inductor (:func:`host_per_layer`)::

    python benchmarks/trace_bench.py --layers 40
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def measure(layers: int, mode: str, share: str) -> dict[str, object]:
    """One mode in this process: the compile seconds and frames of a batch's decoding."""
    import numpy as np
    import torch
    from torch._dynamo.utils import counters

    from cosmos_workflow.engines.base import EncodedRequest, EngineConfig, SamplingParams
    from cosmos_workflow.engines.hf import decode_loop
    from cosmos_workflow.engines.hf.layer_step import LayerStep
    from cosmos_workflow.engines.hf.loading import finish_load
    from cosmos_workflow.engines.tiny import build_random_model, tiny_config, tiny_model_dir
    from cosmos_workflow.tokenizer import load_tokenizer

    config = tiny_config()
    config.text_config.num_hidden_layers = layers
    model = build_random_model(config, torch.device("cpu"), torch.float32, attn_implementation="sdpa")
    options = {"static_cache": True, "decode_attention": "flex", "decode_step": mode, "share_prefix": share}
    engine = finish_load(EngineConfig(model=str(tiny_model_dir()), options=options), model, tiny_model_dir())
    # compiled as on a GPU, but traced only: the eager backend for both modes
    model.generation_config.compile_config = _eager_config()
    decoder = decode_loop.decoder_for(model)
    decoder._layers = (True, LayerStep(model, compiled=True, backend="eager"))
    tokenizer = load_tokenizer(tiny_model_dir() / "tekken.json")
    frames = [np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)] * 2
    requests = []
    for i in range(4):
        encoding = tokenizer.encode(f"a red car number {i} turns left at the crossing", frames)
        requests.append(
            EncodedRequest(
                key=f"r{i}",
                prompt="",
                token_ids=encoding.token_ids,
                frames=frames,
                pixel_values=encoding.pixel_values,
            )
        )
    inputs = engine._inputs(requests)  # with share_prefix=decode, the 4 requests share their frames
    stops = decode_loop.Stops(eos_id=tokenizer.eos_id, pad_id=11)
    with torch.inference_mode():
        decoder.decode(
            inputs,
            SamplingParams(temperature=0.0, max_tokens=2),
            stops,
            compiled=True,
            flex=True,
            cascade=share == "decode",
            layers=mode == "layers",
        )
    return {
        "mode": mode,
        "share_prefix": share,
        "layers": layers,
        **decode_loop.compile_seconds(),
        "frames": counters["frames"]["total"],
    }


def host_per_layer(calls: int = 200) -> dict[str, object]:
    """The host time of one call of the compiled layer function (Inductor, this CPU), on the tiny
    model's tensors: their arithmetic is next to nothing, so the figure is the call's own cost
    (Dynamo's guards, the compiled wrapper launching its kernels), what a GPU step pays a layer on
    the host with ``decode_step=layers``."""
    import torch

    from cosmos_workflow.engines.hf.kernels import gqa_flex_attention
    from cosmos_workflow.engines.hf.layer_step import compiled_layer
    from tests.layer_inputs import layer_inputs

    torch.set_num_threads(1)
    inputs = layer_inputs(4)
    caches = [inputs.cache() for _ in inputs.text.layers]
    layer_fn = compiled_layer("inductor")

    def step() -> None:
        for layer, (keys, values) in zip(inputs.text.layers, caches, strict=True):
            layer_fn(
                layer,
                inputs.hidden,
                inputs.cos,
                inputs.sin,
                keys,
                values,
                inputs.slot,
                inputs.mask,
                gqa_flex_attention,
            )

    with torch.no_grad():
        for _ in range(3):
            step()  # compiles, then warm
        started = time.perf_counter()
        for _ in range(calls):
            step()
        seconds = time.perf_counter() - started
    return {"host_us_per_layer_call": round(1e6 * seconds / (calls * len(inputs.text.layers)), 1)}


def _eager_config() -> object:
    from transformers import CompileConfig

    return CompileConfig(backend="eager")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layers", type=int, default=40)
    parser.add_argument(
        "--share-prefix", choices=("off", "decode"), default="off", help="the engine's share_prefix"
    )
    parser.add_argument(
        "--mode", choices=("model", "layers", "host"), help="one mode in this process (internal)"
    )
    args = parser.parse_args()
    if args.mode == "host":
        print(json.dumps(host_per_layer()))
        return
    if args.mode:
        print(json.dumps(measure(args.layers, args.mode, args.share_prefix)))
        return
    for mode in ("model", "layers", "host"):
        command = [sys.executable, __file__, "--layers", str(args.layers), "--mode", mode]
        command += ["--share-prefix", args.share_prefix]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        print(result.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
