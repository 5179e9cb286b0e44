"""The remote executor's parts: settings, SSH, host keys, SFTP transfer, the host check.

Needs the ``remote`` extra (paramiko): ``pip install "cosmos-workflow[remote]"``.
"""

from __future__ import annotations

from cosmos_workflow.executors.remote.check import CheckResult, check_remote
from cosmos_workflow.executors.remote.executor import PlanMismatchError, RemoteExecutor
from cosmos_workflow.executors.remote.hostkeys import HostKeyStatus, KnownHosts, host_key_status, trust_host
from cosmos_workflow.executors.remote.settings import (
    RemoteConfig,
    SSHSettings,
    load_remote_config,
    remote_config,
)
from cosmos_workflow.executors.remote.ssh import CommandResult, Connection
from cosmos_workflow.executors.remote.transfer import RemoteDir, Upload, safe_name

__all__ = [
    "CheckResult",
    "CommandResult",
    "Connection",
    "HostKeyStatus",
    "KnownHosts",
    "PlanMismatchError",
    "RemoteConfig",
    "RemoteDir",
    "RemoteExecutor",
    "SSHSettings",
    "Upload",
    "check_remote",
    "host_key_status",
    "load_remote_config",
    "remote_config",
    "safe_name",
    "trust_host",
]
