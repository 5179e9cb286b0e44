"""The command line: parse, call :mod:`cosmos_workflow.api`, print. Each command is its own module."""

from __future__ import annotations

from cosmos_workflow.cli import checkpoint as _checkpoint  # noqa: F401  (registers the command)
from cosmos_workflow.cli import config as _config  # noqa: F401
from cosmos_workflow.cli import merge as _merge  # noqa: F401
from cosmos_workflow.cli import plan as _plan  # noqa: F401
from cosmos_workflow.cli import remote as _remote  # noqa: F401
from cosmos_workflow.cli import report as _report  # noqa: F401
from cosmos_workflow.cli import specs as _specs  # noqa: F401
from cosmos_workflow.cli import upsample as _upsample  # noqa: F401
from cosmos_workflow.cli.app import app, main

__all__ = ["app", "main"]
