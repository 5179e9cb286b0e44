"""Where the remote GPU host is and how to reach it: the ``[remote]``, ``[paths]`` and ``[docker]``
tables of ``config.toml`` (the seed's names), each value overridable by a ``COSMOS_REMOTE_*``
environment variable.

    [remote]
    host = "gpu-box.example.org"
    user = "ubuntu"
    ssh_key = "~/.ssh/id_ed25519"      # optional: ssh-agent keys are tried too; never a password
    port = 22
    known_hosts = "~/.ssh/known_hosts"
    host_key_policy = "strict"         # or "accept-new": record an unknown key, refuse a changed one
    mode = "docker"                    # or "venv": run `python` below directly
    python = "python3"                 # venv mode: the remote interpreter (its venv gets the wheel)
    gpus = 1                           # more than 1: torchrun; a host without GPU runs on the CPU

    [paths]
    remote_dir = "~/cosmos-workflow"   # everything remote lives under it; created when missing

    [docker]
    image = "nvcr.io/ubuntu/cosmos-transfer1:latest"
    checkpoint_dir = "/ckpts/Cosmos-UpsamplePrompt1-12B-Transfer"

Environment overrides: ``COSMOS_REMOTE_<KEY>`` for each ``[remote]`` key (``COSMOS_REMOTE_HOST``,
``COSMOS_REMOTE_PORT``, ...), ``COSMOS_REMOTE_DIR`` for ``[paths] remote_dir``,
``COSMOS_REMOTE_IMAGE`` and ``COSMOS_REMOTE_CHECKPOINT_DIR`` for the ``[docker]`` keys.
The file is ``--config``, else ``$COSMOS_CONFIG``, else ``./config.toml`` when it exists.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cosmos_workflow.errors import ConfigError

DEFAULT_IMAGE = "nvcr.io/ubuntu/cosmos-transfer1:latest"
CONFIG_ENV = "COSMOS_CONFIG"

#: a host name, IPv4 or IPv6 literal: no spaces, quotes or leading dash
_HOST = re.compile(r"[A-Za-z0-9_.:%-]+")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*\$?")


def _remote_path(value: str) -> str:
    """An absolute remote path or one under the remote home (``~/...``); no NUL or newline."""
    if not value or "\0" in value or "\n" in value:
        raise ValueError("must be a non-empty path without NUL or newline characters")
    if not (value.startswith("/") or value == "~" or value.startswith("~/")):
        raise ValueError(f"{value!r} must be absolute (/data/cosmos) or under the remote home (~/cosmos)")
    return value


class RemoteSettings(BaseModel):
    """``[remote]``: the host, the account and how its identity is checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(description="host name or IP address of the GPU host")
    port: int = Field(22, ge=1, le=65535)
    user: str = Field(description="account on the host")
    ssh_key: Path | None = Field(
        None, description="private key file; ssh-agent keys are tried as well (passwords never)"
    )
    known_hosts: Path = Field(
        Path("~/.ssh/known_hosts"), description="host keys trusted", validate_default=True
    )
    host_key_policy: Literal["strict", "accept-new"] = Field(
        "strict",
        description="strict: refuse an unknown key; accept-new: record it. A changed key is refused.",
    )
    mode: Literal["docker", "venv"] = Field(
        "docker", description="docker: scripts/upsample_prompt.sh in [docker] image; venv: `python` directly"
    )
    python: str = Field("python3", description="remote interpreter (venv mode)")
    gpus: int = Field(1, ge=1, description="GPUs to use; more than 1 runs torchrun (none found: the CPU)")
    connect_timeout: float = Field(20.0, gt=0, description="seconds for TCP connect, banner and auth each")
    keepalive: int = Field(15, ge=0, description="seconds between SSH keepalives (0: none)")
    connect_attempts: int = Field(4, ge=1, description="tries on transient network errors, with backoff")

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        if not _HOST.fullmatch(value) or value.startswith("-"):
            raise ValueError(f"{value!r} is not a host name or IP address")
        return value

    @field_validator("user")
    @classmethod
    def _check_user(cls, value: str) -> str:
        if not _USER.fullmatch(value):
            raise ValueError(f"{value!r} is not a user name")
        return value

    @field_validator("ssh_key", "known_hosts")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("python")
    @classmethod
    def _check_python(cls, value: str) -> str:
        if not value or any(c in value for c in "\0\n"):
            raise ValueError("must be an interpreter name or path")
        return value

    @property
    def address(self) -> str:
        """``user@host:port``, for messages."""
        return f"{self.user}@{self.host}:{self.port}"


class PathsSettings(BaseModel):
    """``[paths]``: where everything lives on the host."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    remote_dir: str = Field(description="remote folder for uploads, jobs and results")

    @field_validator("remote_dir")
    @classmethod
    def _check_dir(cls, value: str) -> str:
        return _remote_path(value)


class DockerSettings(BaseModel):
    """``[docker]``: the image the job runs in (docker mode) and the checkpoint on the host."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str = Field(DEFAULT_IMAGE, min_length=1)
    checkpoint_dir: str | None = Field(None, description="checkpoint folder on the host (both modes)")

    @field_validator("checkpoint_dir")
    @classmethod
    def _check_dir(cls, value: str | None) -> str | None:
        return _remote_path(value) if value is not None else None


class RemoteConfig(BaseModel):
    """The three tables together: everything needed to run a batch on the host."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    remote: RemoteSettings
    paths: PathsSettings
    docker: DockerSettings = Field(default_factory=DockerSettings)


#: environment variable -> (table, key)
ENV_KEYS: dict[str, tuple[str, str]] = {
    **{f"COSMOS_REMOTE_{key.upper()}": ("remote", key) for key in RemoteSettings.model_fields},
    "COSMOS_REMOTE_DIR": ("paths", "remote_dir"),
    "COSMOS_REMOTE_IMAGE": ("docker", "image"),
    "COSMOS_REMOTE_CHECKPOINT_DIR": ("docker", "checkpoint_dir"),
}


def config_path(explicit: Path | None = None, env: Mapping[str, str] | None = None) -> Path | None:
    """``explicit``, else ``$COSMOS_CONFIG``, else ``./config.toml`` when it exists."""
    env = os.environ if env is None else env
    if explicit is not None:
        return explicit
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    default = Path("config.toml")
    return default if default.is_file() else None


def load_remote_config(path: Path | None = None, *, env: Mapping[str, str] | None = None) -> RemoteConfig:
    """The remote tables of the config file, with the environment's overrides applied."""
    env = os.environ if env is None else env
    source = config_path(path, env)
    tables = _read_tables(source) if source is not None else {}
    for name, (table, key) in ENV_KEYS.items():
        if env.get(name):
            tables.setdefault(table, {})[key] = env[name]
    where = str(source) if source is not None else "no config file (pass --config or set COSMOS_CONFIG)"
    if not tables.get("remote", {}).get("host"):
        raise ConfigError(
            f"{where}: no [remote] host; add host = ... under [remote] or set COSMOS_REMOTE_HOST"
        )
    if not tables.get("paths", {}).get("remote_dir"):
        raise ConfigError(f"{where}: no [paths] remote_dir; add remote_dir = ... or set COSMOS_REMOTE_DIR")
    try:
        return RemoteConfig.model_validate(tables)
    except ValidationError as exc:
        problems = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{where}: {problems}") from exc


def _where(loc: tuple[int | str, ...]) -> str:
    table, *key = map(str, loc)
    return f"[{table}] {'.'.join(key)}" if key else f"[{table}]"


def _read_tables(path: Path) -> dict[str, dict[str, object]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} not found; pass an existing --config") from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from exc
    tables = {}
    for name in ("remote", "paths", "docker"):
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{name}] must be a table")
        tables[name] = dict(table)
    return tables
