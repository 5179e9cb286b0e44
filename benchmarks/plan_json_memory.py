"""Peak memory of ``cosmos-workflow plan --json`` as the prompts file grows (issue 15, case 11).

Run from the repository root (about a minute on 2 cores)::

    .venv/bin/python benchmarks/plan_json_memory.py            # --counts 500 5000 50000

For each count it writes a JSONL file of text-only items, runs ``plan --json`` (stdout to
/dev/null) in a child process and reads that child's peak resident memory from ``wait4``.
``before`` runs the previous printer in the same way, with the settings ``plan`` has without flags:
the whole list built, then given to Rich's ``Console.print_json`` (pretty-printed and highlighted in
memory). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BEFORE = """
import json, sys
from pathlib import Path
from rich.console import Console
from cosmos_workflow import api
from cosmos_workflow.options import plan_settings
from cosmos_workflow.settings import UpsampleSettings
from cosmos_workflow.specs.batch import load_batch
settings = plan_settings(UpsampleSettings())
plans = list(api.plan(load_batch(Path(sys.argv[1])).items, settings))
Console(width=160).print_json(json.dumps([p.model_dump(mode="json") for p in plans]))
"""


def peak(command: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one child process."""
    started = time.monotonic()
    with open(os.devnull, "w") as sink:
        child = subprocess.Popen(command, stdout=sink, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{command} exited {child.returncode}")
    return usage.ru_maxrss / 1024, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[500, 5_000, 50_000])
    args = parser.parse_args()
    print("| items | way | peak RSS (MB) | wall (s) |\n|---:|---|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for count in args.counts:
            prompts = Path(folder) / f"p{count}.jsonl"
            with prompts.open("w") as handle:
                for i in range(count):
                    item = {"name": f"shot{i}", "prompt": f"A city street at night number {i} with rain"}
                    handle.write(json.dumps(item) + "\n")
            ways = {
                "now: streamed": [sys.executable, "-m", "cosmos_workflow", "plan", str(prompts), "--json"],
                "before: print_json": [sys.executable, "-c", BEFORE, str(prompts)],
            }
            for way, command in ways.items():
                megabytes, seconds = peak(command)
                print(f"| {count} | {way} | {megabytes:.0f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
