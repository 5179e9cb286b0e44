#!/usr/bin/env python3
"""The seed's standalone script, kept as a thin wrapper over ``cosmos-workflow upsample-prompts``.

    python scripts/upsample_prompts.py --prompts-file prompts.json --checkpoint-dir CKPT \\
        --preprocess-videos --max-resolution 480 --num-frames 2 --output-file upsampled.json

Without ``--checkpoint-dir`` the checkpoint is looked for where Cosmos-Transfer1 puts it
(``$COSMOS_CHECKPOINT_DIR`` or ``./checkpoints``, then ``nvidia/Cosmos-UpsamplePrompt1-12B-Transfer``).
Any other option is passed through unchanged (e.g. ``--engine vllm --batch-size 32 --num-gpu 2``).
"""

from __future__ import annotations

import argparse
import sys


def translate(argv: list[str]) -> list[str]:
    """The seed's flags -> the package's command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts-file", required=True, help="JSON list of {name, prompt, video_path}")
    parser.add_argument("--output-file", help="output JSON (default: <prompts>.upsampled.json)")
    parser.add_argument(
        "--checkpoint-dir",
        help="upsampler checkpoint folder, or 'tiny-random' (default: Cosmos-Transfer1's place, "
        "checkpoints/nvidia/Cosmos-UpsamplePrompt1-12B-Transfer under $COSMOS_CHECKPOINT_DIR or here)",
    )
    parser.add_argument("--preprocess-videos", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--max-resolution", default="480")
    parser.add_argument("--num-frames", type=int, default=2)
    known, rest = parser.parse_known_args(argv)
    args = ["upsample-prompts", known.prompts_file]
    if known.output_file:
        args += ["--output-file", known.output_file]
    if known.checkpoint_dir:
        args += ["--model", known.checkpoint_dir]
    args.append("--preprocess-videos" if known.preprocess_videos else "--no-preprocess")
    args += ["--max-resolution", str(known.max_resolution), "--num-frames", str(known.num_frames)]
    return args + rest


def main(argv: list[str] | None = None) -> None:
    from cosmos_workflow.cli import main as cli_main

    sys.argv = ["cosmos-workflow", *translate(sys.argv[1:] if argv is None else argv)]
    cli_main()


if __name__ == "__main__":
    main()
