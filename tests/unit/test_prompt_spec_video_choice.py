"""Which video the upsampler sees for a spec (Cosmos-Transfer1's rule, DOMAIN.md section 1)."""

from __future__ import annotations

import pytest

from cosmos_workflow.specs.prompt_spec import Modality, UpsampleFrom, new_spec
from cosmos_workflow.workflow.spec_runs import VideoChoice, choose_video


def choice(
    controls: dict[Modality, str | None], upsample_from: UpsampleFrom = "auto", video: str | None = "in.mp4"
) -> VideoChoice:
    spec = new_spec("s", "p", input_video_path=video, control_inputs=controls, upsample_from=upsample_from)
    return choose_video(spec)


def test_no_controls_uses_the_input_video() -> None:
    assert choice({}) == VideoChoice("in.mp4", "input")
    assert choice({}, video=None) == VideoChoice(None, "none")


@pytest.mark.parametrize("modality", ["seg", "depth"])
def test_seg_and_depth_use_their_control_video(modality: Modality) -> None:
    assert choice({modality: "c.mp4"}) == VideoChoice("c.mp4", f"control:{modality}")


@pytest.mark.parametrize("modality", ["vis", "edge"])
def test_vis_and_edge_use_the_given_clip_or_the_input_video(modality: Modality) -> None:
    assert choice({modality: "clip.mp4"}) == VideoChoice("clip.mp4", f"control:{modality}")
    computed = choice({modality: None})
    assert computed.path == "in.mp4" and computed.source == "input"
    assert computed.note is not None and "computed from the input video" in computed.note


def test_depth_without_a_video_falls_back_to_the_input_with_a_note() -> None:
    fallback = choice({"depth": None})
    assert fallback.path == "in.mp4" and fallback.note is not None and "no depth video" in fallback.note


def test_the_first_listed_control_decides() -> None:
    assert choice({"depth": "d.mp4", "vis": None}).source == "control:depth"
    assert choice({"vis": None, "depth": "d.mp4"}).source == "input"
    assert choice({"seg": "s.mp4", "depth": "d.mp4"}).path == "s.mp4"


def test_override_per_spec() -> None:
    assert choice({"vis": None, "depth": "d.mp4"}, upsample_from="depth") == VideoChoice(
        "d.mp4", "control:depth"
    )
    forced = choice({"depth": "d.mp4"}, upsample_from="input")
    assert forced.path == "in.mp4" and forced.source == "input"
    missing = choice({"depth": "d.mp4"}, upsample_from="seg")
    assert missing.path == "in.mp4" and missing.note is not None and "no seg control" in missing.note
