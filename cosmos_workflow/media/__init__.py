"""Video preprocessing: probe, pick frames, decode and resize in memory, write optional clips;
frames and clips that several requests of a run want, once (:class:`SharedFrames`).

PyAV (bundled FFmpeg) is imported only inside the functions that decode or encode, so importing
this package stays cheap for ``--help`` and ``plan``. Resizing geometry (the size that fits the
token budget) is chosen by :mod:`cosmos_workflow.planner`; this package only resizes to it.
"""

from cosmos_workflow.media._clip import clip_path, copy_clip, write_clip
from cosmos_workflow.media._frames import read_frames
from cosmos_workflow.media._probe import VideoInfo, probe_video
from cosmos_workflow.media._sampling import FrameSampling, select_frame_indices
from cosmos_workflow.media._shared import SharedFrames

__all__ = [
    "FrameSampling",
    "SharedFrames",
    "VideoInfo",
    "clip_path",
    "copy_clip",
    "probe_video",
    "read_frames",
    "select_frame_indices",
    "write_clip",
]
