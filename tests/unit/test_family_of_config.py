"""The family of a checkpoint read elsewhere (the remote host's config.json, parsed), named as a
local folder with the same file would be."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cosmos_workflow.errors import UsageError
from cosmos_workflow.families import family_name, family_name_of_config, family_title

CONFIGS = [
    ({"model_type": "qwen2_5_vl"}, "qwen2_5_vl"),
    ({"model_type": "llava", "vision_config": {"model_type": "pixtral"}}, "pixtral"),
    ({"model_type": "llava"}, "pixtral"),
    ({"model_type": "pixtral"}, "pixtral"),
    ({"architectures": ["Something"]}, "pixtral"),  # no type to go by: Pixtral, as before families
    (["not", "an", "object"], "pixtral"),
]


@pytest.mark.parametrize(("config", "expected"), CONFIGS)
def test_the_family_of_a_parsed_config_is_that_of_a_folder_holding_it(
    tmp_path: Path, config: object, expected: str
) -> None:
    (tmp_path / "config.json").write_text(json.dumps(config))

    assert family_name_of_config(config, "the host's checkpoint /ckpt") == expected
    assert family_name(tmp_path) == expected


def test_no_config_json_is_a_mistral_format_folder_so_pixtral() -> None:
    assert family_name_of_config(None, "the host's checkpoint /ckpt") == "pixtral"


@pytest.mark.parametrize(
    "config",
    [
        {"model_type": "qwen3_vl"},
        {"model_type": "llava", "vision_config": {"model_type": "clip_vision_model"}},
    ],
)
def test_an_unsupported_type_is_refused_in_one_line_naming_the_source(config: object) -> None:
    with pytest.raises(UsageError) as raised:
        family_name_of_config(config, "the host's checkpoint /ckpt")

    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("the host's checkpoint /ckpt is a ") and "qwen2_5_vl" in message


def test_family_titles_are_the_names_users_know() -> None:
    assert family_title("pixtral") == "Pixtral"
    assert family_title("qwen2_5_vl") == "Qwen2.5-VL / Cosmos-Reason1"
