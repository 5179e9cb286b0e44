"""The remote settings: the seed's config.toml names, COSMOS_REMOTE_* (and _PATHS_, _DOCKER_)
overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from cosmos_workflow.errors import ConfigError, TransferError
from cosmos_workflow.executors.remote.settings import load_remote_config
from cosmos_workflow.executors.remote.transfer import inside_path, safe_name, safe_suffix

SEED_CONFIG = """
[remote]
user = "ubuntu"
host = "192.168.1.50"
port = 2222
ssh_key = "~/.ssh/cosmos_key"

[paths]
remote_dir = "/home/ubuntu/NatsFS/cosmos-transfer1"

[docker]
image = "nvcr.io/ubuntu/cosmos-transfer1:latest"
checkpoint_dir = "/home/ubuntu/checkpoints"

[upsample]
max_tokens = 200
"""


@pytest.fixture
def seed_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(SEED_CONFIG)
    return path


def test_seed_config_file_loads_with_defaults(seed_config: Path) -> None:
    config = load_remote_config(seed_config, env={})
    assert config.remote.host == "192.168.1.50"
    assert config.remote.port == 2222
    assert config.remote.ssh_key == Path("~/.ssh/cosmos_key").expanduser()
    assert config.remote.known_hosts == Path("~/.ssh/known_hosts").expanduser()
    assert config.remote.host_key_policy == "strict"
    assert (config.remote.mode, config.remote.gpus) == ("docker", 1)
    assert config.remote_dir == "/home/ubuntu/NatsFS/cosmos-transfer1"
    assert config.checkpoint_dir == "/home/ubuntu/checkpoints"


def test_environment_overrides_each_table(seed_config: Path) -> None:
    env = {
        "COSMOS_REMOTE_HOST": "gpu.example.org",
        "COSMOS_REMOTE_PORT": "22",
        "COSMOS_REMOTE_HOST_KEY_POLICY": "accept-new",
        "COSMOS_REMOTE_GPUS": "4",
        "COSMOS_PATHS_REMOTE_DIR": "~/work",
        "COSMOS_DOCKER_IMAGE": "local/cosmos:1",
    }
    config = load_remote_config(seed_config, env=env)
    assert (config.remote.host, config.remote.port, config.remote.gpus) == ("gpu.example.org", 22, 4)
    assert config.remote.host_key_policy == "accept-new"
    assert (config.remote_dir, config.image) == ("~/work", "local/cosmos:1")


def test_config_file_found_through_the_environment(seed_config: Path) -> None:
    config = load_remote_config(env={"COSMOS_WORKFLOW_CONFIG": str(seed_config)})
    assert config.remote.user == "ubuntu"


def test_environment_alone_is_enough(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"COSMOS_REMOTE_HOST": "h", "COSMOS_REMOTE_USER": "u", "COSMOS_PATHS_REMOTE_DIR": "/data"}
    config = load_remote_config(env=env)
    assert (config.remote.host, config.remote.user, config.remote_dir) == ("h", "u", "/data")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[paths]\nremote_dir = '/x'\n",
            "no [remote] host; add host = ... under [remote] or set COSMOS_REMOTE_HOST",
        ),
        (
            "[remote]\nhost = 'h'\nuser = 'u'\n",
            "no [paths] remote_dir; add remote_dir = ... under [paths] or set COSMOS_PATHS_REMOTE_DIR",
        ),
        ("[remote]\nhost = 'h'\nuser = 'u'\nport = 0\n[paths]\nremote_dir = '/x'\n", "[remote] port = 0"),
        (
            "[remote]\nhost = 'h'\nuser = 'u'\nmode = 'k8s'\n[paths]\nremote_dir = '/x'\n",
            "[remote] mode = 'k8s'",
        ),
        (
            "[remote]\nhost = 'h'\nuser = 'u'\npasword = 'x'\n[paths]\nremote_dir = '/x'\n",
            "unknown key 'pasword'",
        ),
        ("[remote]\nhost = 'h; rm -rf /'\nuser = 'u'\n[paths]\nremote_dir = '/x'\n", "not a host name"),
        ("[remote]\nhost = 'h'\nuser = '-oProxyCommand=x'\n[paths]\nremote_dir = '/x'\n", "not a user name"),
        ("[remote]\nhost = 'h'\nuser = 'u'\n[paths]\nremote_dir = 'relative/dir'\n", "must be absolute"),
        ("[remote]\nhost = 'h'\nuser = 'u'\n[docker]\ncheckpoint_dir = 'ckpt'\n", "must be absolute"),
        ("[remote]\nhost = = 'h'\n", "invalid TOML"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as caught:
        load_remote_config(path, env={})
    assert message in str(caught.value)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_config_file_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found; check --config"):
        load_remote_config(tmp_path / "nope.toml", env={})


@pytest.mark.parametrize(
    "hostile",
    ["a b", "it's", 'say "hi"', "$(touch x)", "a;rm -rf ~", "../../etc/passwd", "x\ny", "", "日本語", "-rf"],
)
def test_safe_names_are_plain_and_distinct(hostile: str) -> None:
    name = safe_name(hostile)
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
    assert not name.startswith((".", "-"))
    assert safe_name(hostile) == name  # stable across runs
    assert name != safe_name(hostile + " ")


def test_safe_suffix_keeps_plain_extensions_only() -> None:
    assert safe_suffix(Path("clip one.MP4")) == ".mp4"
    assert safe_suffix(Path("x.$(id)")) == ""
    assert safe_suffix(Path("noext")) == ""


@pytest.mark.parametrize("escaping", ["/etc/passwd", "..", "../x", "a/../../x", "a/../..", ".", "", "a\0b"])
def test_paths_leaving_remote_dir_are_refused(escaping: str) -> None:
    with pytest.raises(TransferError, match="refused"):
        inside_path(escaping)


def test_paths_inside_remote_dir_are_normalised() -> None:
    assert inside_path("blobs/./x/../y.mp4") == "blobs/y.mp4"
    assert inside_path("dir with space/it's $(x);") == "dir with space/it's $(x);"
