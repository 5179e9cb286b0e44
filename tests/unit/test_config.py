"""Settings: defaults < TOML file < COSMOS_* environment < flags, with each value's source."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cosmos_workflow.config import (
    CONFIG_FILE,
    OTHER_VARIABLES,
    SECTIONS,
    env_name,
    options_from_keywords,
    resolve_settings,
    run_options,
)
from cosmos_workflow.errors import ConfigError, UsageError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_each_layer_overrides_the_one_below_and_says_so(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", '[upsample]\nmax_tokens = 200\nengine = "fake"\ntemperature = 0.1\n')
    env = {"COSMOS_TEMPERATURE": "0.3", "COSMOS_ENGINE": "hf"}
    resolved = resolve_settings(flags={"upsample": {"engine": "openai"}}, config_file=config, env=env)
    upsample = resolved.settings.upsample
    assert (upsample.max_tokens, upsample.temperature, upsample.engine, upsample.num_frames) == (
        200,
        0.3,
        "openai",
        2,
    )
    assert resolved.sources["upsample.max_tokens"] == f"file {config}"
    assert resolved.sources["upsample.temperature"] == "env COSMOS_TEMPERATURE"
    assert resolved.sources["upsample.engine"] == "flag"
    assert dict((n, s) for n, _, s in resolved.rows())["upsample.num_frames"] == "default"


def test_the_file_is_found_by_flag_env_or_working_directory(tmp_path: Path) -> None:
    default = write(tmp_path / CONFIG_FILE, "[upsample]\nnum_frames = 1\n")
    other = write(tmp_path / "other.toml", "[upsample]\nnum_frames = 3\n")
    assert resolve_settings(env={}, cwd=tmp_path).config_file == default
    from_env = resolve_settings(env={"COSMOS_WORKFLOW_CONFIG": str(other)}, cwd=tmp_path)
    assert from_env.settings.upsample.num_frames == 3
    with pytest.raises(ConfigError, match=r"config file .*missing.toml not found; check --config"):
        resolve_settings(config_file=tmp_path / "missing.toml", env={})


def test_a_typo_in_the_file_is_one_line_naming_key_and_file(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", "[upsample]\nmax_token = 200\n")
    with pytest.raises(ConfigError) as caught:
        resolve_settings(config_file=config, env={})
    message = str(caught.value)
    assert "\n" not in message and not isinstance(caught.value, UsageError)
    assert f"{config}: unknown key 'max_token' in [upsample] (did you mean 'max_tokens'?)" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[upsampel]\nx = 1\n", r"unknown section \[upsampel\] \(did you mean 'upsample'\?\)"),
        ("[upsample\n", r"invalid TOML"),
        (
            '[upsample]\nmax_tokens = "lots"\n',
            r"\[upsample\] max_tokens = 'lots' \(file .*\): Input should be",
        ),
        ("[remote]\nport = 0\n", r"\[remote\] port = 0"),
        ("upsample = 3\n", r"must be a \[upsample\] table"),
    ],
)
def test_bad_files_are_one_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        resolve_settings(config_file=write(tmp_path / "c.toml", text), env={})


def test_the_seed_sections_are_read(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.toml",
        '[remote]\nhost = "gpu1"\nuser = "me"\nssh_key = "~/.ssh/id_ed25519"\n'
        '[paths]\nremote_dir = "/data/cw"\n[docker]\nimage = "cosmos:local"\n',
    )
    settings = resolve_settings(config_file=config, env={"COSMOS_REMOTE_PORT": "2222"}).settings
    assert (settings.remote.host, settings.remote.port, settings.remote.host_key_policy) == (
        "gpu1",
        2222,
        "strict",
    )
    assert settings.paths.remote_dir == "/data/cw" and settings.docker.image == "cosmos:local"
    assert (
        env_name("remote", "host") == "COSMOS_REMOTE_HOST" and env_name("upsample", "seed") == "COSMOS_SEED"
    )


def test_environment_values_are_typed_and_checked() -> None:
    env = {
        "COSMOS_ENGINE_OPTIONS": '{"max_num_seqs": 64}',
        "COSMOS_MAX_RESOLUTION": "auto",
        "COSMOS_SEED": "",
    }
    upsample = resolve_settings(env=env, cwd=Path("/")).settings.upsample
    assert upsample.engine_options == {"max_num_seqs": 64} and upsample.max_resolution == "auto"
    assert upsample.seed is None  # an empty variable is unset
    with pytest.raises(ConfigError, match=r"\$COSMOS_ENGINE_OPTIONS must be a JSON object"):
        resolve_settings(env={"COSMOS_ENGINE_OPTIONS": "max_num_seqs=64"}, cwd=Path("/"))
    with pytest.raises(ConfigError, match=r"\$COSMOS_ENGINE_OPTIONS must be a JSON object"):
        resolve_settings(env={"COSMOS_ENGINE_OPTIONS": "[" * 50_000}, cwd=Path("/"))  # no RecursionError
    with pytest.raises(ConfigError, match=r"num_frames = '99' \(env COSMOS_NUM_FRAMES\)"):
        resolve_settings(env={"COSMOS_NUM_FRAMES": "99"}, cwd=Path("/"))


def test_a_bad_flag_value_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"top_p = 0 \(flag\)"):
        resolve_settings(flags={"upsample": {"top_p": 0}}, env={}, cwd=Path("/"))
    with pytest.raises(UsageError, match="unknown key 'colour'"):
        resolve_settings(flags={"upsample": {"colour": "red"}}, env={}, cwd=Path("/"))


def test_run_options_are_built_once_from_the_settings(tmp_path: Path) -> None:
    settings = resolve_settings(
        flags={"upsample": {"engine": "fake", "max_tokens": 64, "num_frames": 1}}, env={}, cwd=tmp_path
    ).settings.upsample
    options = run_options(settings, output=tmp_path / "out.json", force=True)
    assert options.plan.max_tokens == options.sampling.max_tokens == 64 and options.force
    assert options.engine.model == "fake" and options.engine.max_images_per_prompt == 1
    assert options.clips_dir == tmp_path / "out_clips"
    no_clips = run_options(settings.model_copy(update={"clips": False}), output=tmp_path / "o.json")
    assert no_clips.clips_dir is None
    with pytest.raises(ConfigError, match="no model given"):
        run_options(settings.model_copy(update={"engine": "hf"}))


def test_keyword_arguments_take_the_flags_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / CONFIG_FILE, '[upsample]\nmodel = "tiny-random"\nmax_tokens = 100\n')
    options = options_from_keywords(max_tokens=50)
    assert options.engine.model == "tiny-random" and options.sampling.max_tokens == 50


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each unknown variable is warned about once per process: start from none warned."""
    monkeypatch.setattr("cosmos_workflow.config._warned", set())


def test_case11c_unknown_cosmos_variable_is_warned_once_with_did_you_mean(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fresh_warnings: None
) -> None:
    env = {"COSMOS_MAX_TOKEN": "200", "COSMOS_REMOTE_HOTS": "gpu1", "COSMOS_ZZZZZZZZZZ": "1", "HOME": "/x"}
    for _ in range(2):
        resolved = resolve_settings(env=env, cwd=tmp_path)
    assert resolved.settings.upsample.max_tokens == 300  # ignored, as the warning says
    assert [r.getMessage() for r in caplog.records] == [
        "unknown environment variable COSMOS_MAX_TOKEN (did you mean 'COSMOS_MAX_TOKENS'?); it is ignored "
        "(cosmos-workflow config lists the settings)",
        "unknown environment variable COSMOS_REMOTE_HOTS (did you mean 'COSMOS_REMOTE_HOST'?); it is ignored "
        "(cosmos-workflow config lists the settings)",
        "unknown environment variable COSMOS_ZZZZZZZZZZ; it is ignored "
        "(cosmos-workflow config lists the settings)",
    ]


def test_case11c_settings_and_the_variables_the_code_reads_are_never_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fresh_warnings: None
) -> None:
    """Every COSMOS_* name in the code, scripts, tests and CI is a setting or in OTHER_VARIABLES."""
    root = Path(__file__).resolve().parents[2]
    folders = ["cosmos_workflow", "scripts", "tests", "benchmarks", "examples", ".ci"]
    files = [p for folder in folders for p in (root / folder).rglob("*") if p.is_file()]
    named = set()
    for path in files:
        if path.suffix in {".py", ".sh", ".toml", ".md", ""}:
            named |= set(re.findall(r"COSMOS_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(errors="replace")))
    named -= {"COSMOS_MAX_TOKEN", "COSMOS_REMOTE_HOTS", "COSMOS_ZZZZZZZZZZ"}  # the typos tested above
    assert "COSMOS_CI" in named and "COSMOS_TEST_SSHD" in named and "COSMOS_MAX_TOKENS" in named
    settings = {env_name(section, key) for section, model in SECTIONS.items() for key in model.model_fields}
    assert sorted(named - settings - OTHER_VARIABLES) == []
    resolve_settings(env=dict.fromkeys(named, ""), cwd=tmp_path)
    assert caplog.records == []
