"""Planned jobs for tests of batching, no video read: a request on a named clip (two frames at
480x272) or, with no clip, a text-only one."""

from __future__ import annotations

from pathlib import Path

from cosmos_workflow.planner import Plan
from cosmos_workflow.runner import Job
from cosmos_workflow.specs.batch import BatchItem


def video_job(name: str, video: str, total_tokens: int, *, image_tokens: int = 1000) -> Job:
    """A fitting request of ``total_tokens`` on clip ``video`` (``image_tokens`` of them its
    frames); ``video`` empty: a text-only request."""
    plan = Plan(
        name=name,
        max_tokens=300,
        image_tokens=image_tokens if video else 0,
        total_tokens=total_tokens,
        max_model_len=4096,
        fits=True,
        status="ok",
        frame_indices=[0, 60] if video else [],
        width=480 if video else None,
        height=272 if video else None,
    )
    path = Path(f"/clips/{video}.mp4") if video else None
    item = BatchItem(name=name, prompt=f"prompt {name}", video_path=path)
    return Job(item=item, key=f"key-{name}", plan=plan)
