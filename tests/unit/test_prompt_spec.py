"""PromptSpec: deterministic ids, strict validation, old files, and the committed JSON Schema."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from cosmos_workflow.specs import prompt_spec
from cosmos_workflow.specs.prompt_spec import PromptSpec, new_spec, spec_id
from cosmos_workflow.specs.store import load_spec
from cosmos_workflow.workflow import PromptSpecManager

V0 = Path(__file__).resolve().parents[1] / "data" / "specs_v0"


def test_id_depends_on_prompt_video_and_controls_only() -> None:
    base = spec_id("A city", "city.mp4", {"depth": "d.mp4"})
    assert base.startswith("ps_") and len(base) == 19
    assert spec_id("A city", "city.mp4", {"depth": "d.mp4"}) == base
    assert spec_id("A town", "city.mp4", {"depth": "d.mp4"}) != base
    assert spec_id("A city", "town.mp4", {"depth": "d.mp4"}) != base
    assert spec_id("A city", "city.mp4", {"depth": "e.mp4"}) != base
    assert spec_id("A city", "city.mp4", {"seg": "d.mp4"}) != base
    one = new_spec("a", "A city", input_video_path="city.mp4", control_inputs={"depth": "d.mp4"})
    two = new_spec(
        "b", "A city", input_video_path="city.mp4", control_inputs={"depth": "d.mp4"}, negative_prompt="x"
    )
    assert one.id == two.id == base


def test_unknown_keys_and_modalities_are_rejected() -> None:
    spec = new_spec("a", "A city").model_dump(mode="json")
    with pytest.raises(ValidationError, match="extra"):
        PromptSpec.model_validate({**spec, "colour": "red"})
    with pytest.raises(ValidationError, match="control_inputs"):
        PromptSpec.model_validate({**spec, "control_inputs": {"lidar": "l.mp4"}})
    with pytest.raises(ValidationError, match="upsample_from"):
        PromptSpec.model_validate({**spec, "upsample_from": "keypoint"})


def test_round_trip_keeps_every_field() -> None:
    spec = new_spec("a", "A city", input_video_path="c.mp4", control_inputs={"vis": None, "seg": "s.mp4"})
    again = PromptSpec.model_validate_json(spec.model_dump_json())
    assert again == spec
    assert list(again.control_inputs) == ["vis", "seg"]  # order decides the upsampler's video


def test_old_spec_files_load(tmp_path: Path) -> None:
    shutil.copytree(V0, tmp_path / "specs")
    scan = PromptSpecManager(tmp_path / "specs").scan()
    assert scan.problems == []
    city, forest = (s.spec for s in scan.specs)
    assert city.name == "city" and city.control_inputs == {
        "depth": "inputs/videos/city_depth.mp4",
        "vis": None,
    }
    assert city.upsampled_prompt is None and city.upsampling_params is None and not city.upsampled
    assert city.timestamp.year == 2025 and city.upsample_from == "auto"
    # the earlier workflow wrote the upsampled text into prompt and set is_upsampled
    assert forest.upsampled and forest.parent_prompt_text == "Serene forest landscape"


def test_old_file_saved_again_keeps_legacy_flag_and_gains_version(tmp_path: Path) -> None:
    shutil.copytree(V0, tmp_path / "specs")
    [path] = (tmp_path / "specs").rglob("forest*.json")
    manager = PromptSpecManager(tmp_path / "specs")
    manager.save(load_spec(path), path)
    data = json.loads(path.read_text())
    assert data["is_upsampled"] is True and data["schema_version"] == 1
    assert load_spec(path).upsampled


def test_committed_schema_is_current() -> None:
    committed = prompt_spec.SCHEMA_PATH.read_text(encoding="utf-8")
    assert committed == prompt_spec.schema_text(), (
        "stale schema: run python -m cosmos_workflow.specs.prompt_spec --write-schema"
    )
    assert prompt_spec.main(["--check"]) == 0
    schema = json.loads(committed)
    assert {"upsampled_prompt", "upsampled_at", "upsampling_params"} <= set(schema["properties"])
    assert set(schema["required"]) == {"id", "name", "prompt"}


def test_schema_check_fails_when_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "schema.json"
    stale.write_text("{}\n")
    monkeypatch.setattr(prompt_spec, "SCHEMA_PATH", stale)
    assert prompt_spec.main(["--check"]) == 1
    assert prompt_spec.main(["--write-schema"]) == 0
    assert prompt_spec.main(["--check"]) == 0
