"""The remote host as a run needs it: the ``[remote]``, ``[paths]`` and ``[docker]`` settings of
:mod:`cosmos_workflow.config` (file < ``COSMOS_REMOTE_*``, ``COSMOS_PATHS_REMOTE_DIR``,
``COSMOS_DOCKER_*`` environment), complete and with ``~`` expanded on this side.

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
    checkpoint_dir = "/ckpts/Cosmos-UpsamplePrompt1-12B-Transfer"   # on the host (both modes)
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cosmos_workflow.config import ResolvedSettings, env_name, resolve_settings
from cosmos_workflow.errors import ConfigError
from cosmos_workflow.userfiles import MiB, UserFile, check_user_file


class SSHSettings(BaseModel):
    """How to reach the host: ``[remote]`` with host and user given, paths expanded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    port: int = Field(22, ge=1, le=65535)
    user: str
    ssh_key: Path | None = None
    known_hosts: Path = Field(Path("~/.ssh/known_hosts").expanduser())
    host_key_policy: Literal["strict", "accept-new"] = "strict"
    mode: Literal["docker", "venv"] = "docker"
    python: str = "python3"
    gpus: int = Field(1, ge=1)
    connect_timeout: float = Field(20.0, gt=0, description="seconds for TCP connect, banner and auth each")
    keepalive: int = Field(15, ge=0, description="seconds between SSH keepalives (0: none)")
    connect_attempts: int = Field(4, ge=1, description="tries on transient network errors, with backoff")
    config_file: Path | None = Field(None, description="the config file these came from, for hints")

    @property
    def address(self) -> str:
        """``user@host:port``, for messages."""
        return f"{self.user}@{self.host}:{self.port}"

    def command(self, *args: str) -> str:
        """A cosmos-workflow command for a hint, with the ``--config`` these settings came from."""
        config = ["--config", str(self.config_file)] if self.config_file else []
        return shlex.join(["cosmos-workflow", *args, *config])


#: [remote] ssh_key: a private key is a few KiB
SSH_KEY = UserFile(
    what="[remote] ssh_key",
    max_bytes=MiB,
    error=ConfigError,
    fix="point it at your private key file (e.g. ~/.ssh/id_ed25519), or remove it to use the ssh-agent",
)
#: [remote] known_hosts: one line per host
KNOWN_HOSTS = UserFile(
    what="known_hosts file",
    max_bytes=16 * MiB,
    error=ConfigError,
    fix="set [remote] known_hosts to an OpenSSH known_hosts file (default ~/.ssh/known_hosts)",
)


def check_key_files(settings: SSHSettings) -> None:
    """The files ``[remote]`` names, where they exist, are regular files within their caps:
    paramiko opens them itself, and a FIFO would block it, ``/dev/zero`` fill memory."""
    for path, kind in ((settings.ssh_key, SSH_KEY), (settings.known_hosts, KNOWN_HOSTS)):
        if path is not None and path.exists():
            check_user_file(path, kind)


class RemoteConfig(BaseModel):
    """Everything a remote run needs from the settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    remote: SSHSettings
    remote_dir: str = Field(description="[paths] remote_dir: the remote folder for uploads, jobs, results")
    image: str = Field(description="[docker] image (docker mode)")
    checkpoint_dir: str | None = Field(None, description="[docker] checkpoint_dir: on the host, both modes")


def remote_config(resolved: ResolvedSettings) -> RemoteConfig:
    """The remote settings, refused with the key to set when host, user or remote_dir is missing."""
    settings = resolved.settings
    where = str(resolved.config_file) if resolved.config_file else "no config file (pass --config)"
    for section, key in (("remote", "host"), ("remote", "user"), ("paths", "remote_dir")):
        if getattr(getattr(settings, section), key) is None:
            raise ConfigError(
                f"{where}: no [{section}] {key}; add {key} = ... under [{section}] "
                f"or set {env_name(section, key)}"
            )
    remote = settings.remote
    ssh = SSHSettings.model_validate(
        remote.model_dump()
        | {
            "ssh_key": remote.ssh_key.expanduser() if remote.ssh_key else None,
            "known_hosts": remote.known_hosts.expanduser(),
            "config_file": resolved.config_file.absolute() if resolved.config_file else None,
        }
    )
    check_key_files(ssh)  # before the run plans anything
    assert settings.paths.remote_dir is not None
    return RemoteConfig(
        remote=ssh,
        remote_dir=settings.paths.remote_dir,
        image=settings.docker.image,
        checkpoint_dir=settings.docker.checkpoint_dir,
    )


def load_remote_config(
    config_file: Path | None = None, *, env: Mapping[str, str] | None = None
) -> RemoteConfig:
    """The remote settings from the config file and the environment."""
    return remote_config(resolve_settings(config_file=config_file, env=env))
