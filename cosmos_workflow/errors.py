"""The one exception tree of cosmos-workflow.

Every error the package raises on purpose derives from :class:`CosmosWorkflowError`. Library
errors (PyAV, transformers, vLLM, httpx, paramiko) are wrapped at the boundary with
``raise ... from exc`` so that callers catch one family. Each message says what happened and
what to do next; the CLI prints it as one line and exits non-zero.

    CosmosWorkflowError
    ├── ConfigError          bad options or configuration (whole run)
    │   ├── UsageError       a flag's value or a combination of flags is invalid (exit 2)
    │   ├── OutputBusyError  another live run is writing the same output
    │   ├── OutputShrinkError  replacing the output would lose what it holds (``merge`` without --force)
    │   └── PathError        a path the user gave cannot be used (special file, the input itself, ...)
    ├── InputFileError       the prompts file or spec folder cannot be read at all (whole run)
    ├── ItemError            one item of a batch; reported, the rest go on
    │   ├── VideoError       missing, unreadable, empty or unusable video
    │   └── BudgetError      the request cannot fit the model's context
    ├── ModelLoadError       the engine or checkpoint cannot be loaded (whole run)
    ├── EngineError          a generation call failed
    │   ├── ContextLengthError   the engine rejected a request as too long
    │   └── GPUOutOfMemoryError  the batch did not fit in accelerator memory
    ├── SpecError            a PromptSpec file is invalid or cannot be written
    ├── LaunchError          the processes started for a run (torchrun for num_gpu > 1) failed
    ├── RemoteError          SSH, file transfer or the remote command failed
    │   ├── HostKeyError         the host's key is unknown or changed (refused)
    │   ├── RemoteAuthError      the host refused every key offered
    │   ├── RemoteConnectionError  the host cannot be reached, or the connection dropped
    │   ├── RemoteCommandError   a remote command failed or timed out
    │   └── TransferError        an upload or download failed, or a path left remote_dir
    ├── ReportError          the review page cannot be written
    └── ClusterError         the Ray cluster cannot be reached, or its pipeline failed
"""

from __future__ import annotations


class CosmosWorkflowError(Exception):
    """Base class of every error raised by cosmos-workflow on purpose."""


class ConfigError(CosmosWorkflowError):
    """An option or configuration value is invalid."""


class UsageError(ConfigError):
    """A command-line flag, or a combination of flags, is invalid: the CLI exits 2."""


class OutputBusyError(ConfigError):
    """Another live run holds the output's lock (one writer per output)."""


class OutputShrinkError(ConfigError):
    """Replacing the output would lose records it holds; it is left unchanged (``--force`` replaces
    it, keeping the old file beside it)."""


class PathError(ConfigError):
    """A path the user gave cannot be used: a special file, the input as output, an unwritable folder."""


class InputFileError(CosmosWorkflowError):
    """The prompts file (or spec folder) cannot be read or parsed as a whole."""


class ItemError(CosmosWorkflowError):
    """A single batch item is unusable; the rest of the batch goes on."""

    def __init__(self, message: str, *, item: str | None = None) -> None:
        super().__init__(message)
        self.item = item


class VideoError(ItemError):
    """A video is missing, unreadable, empty, corrupt or of an unusable shape."""


class BudgetError(ItemError):
    """A request cannot fit ``prompt tokens + max_tokens <= max_model_len`` at any size."""


class ModelLoadError(CosmosWorkflowError):
    """The engine or its checkpoint cannot be loaded."""


class EngineError(CosmosWorkflowError):
    """A generation call failed."""


class ContextLengthError(EngineError):
    """The engine reported a request longer than its maximum model length."""


class GPUOutOfMemoryError(EngineError):
    """The batch did not fit in accelerator memory; retry with a smaller batch."""


class SpecError(CosmosWorkflowError):
    """A PromptSpec file is invalid, or cannot be written."""


class LaunchError(CosmosWorkflowError):
    """The processes a run started (torchrun for ``num_gpu > 1``) ended with items not done."""


class RemoteError(CosmosWorkflowError):
    """SSH, file transfer or a remote command failed."""


class HostKeyError(RemoteError):
    """The host's key is not in known_hosts (strict policy) or differs from the recorded one."""

    def __init__(self, message: str, *, host: str, fingerprint: str) -> None:
        super().__init__(message)
        self.host = host
        self.fingerprint = fingerprint


class RemoteAuthError(RemoteError):
    """The host refused every key offered (key file and agent)."""


class RemoteConnectionError(RemoteError):
    """The host cannot be reached, or the connection dropped (retried first when transient)."""


class RemoteCommandError(RemoteError):
    """A remote command exited non-zero or timed out."""

    def __init__(self, message: str, *, returncode: int | None = None, stderr: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


class TransferError(RemoteError):
    """An upload or download failed its checksum, or a path would leave ``remote_dir``."""


class ReportError(CosmosWorkflowError):
    """The review page (``report``) cannot be written."""


class ClusterError(CosmosWorkflowError):
    """The Ray cluster cannot be reached, or the pipeline on it failed as a whole."""


def reason(exc: BaseException) -> str:
    """What went wrong, never empty: the exception's message, else its type's name (a bare
    ``EOFError()`` or ``socket.timeout()`` has no message)."""
    return str(exc).strip() or type(exc).__name__
