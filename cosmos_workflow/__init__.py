"""cosmos-workflow: batch prompt upsampling for NVIDIA Cosmos.

Public entry points live in :mod:`cosmos_workflow.api`; the exception tree in
:mod:`cosmos_workflow.errors`. Importing this package never imports torch or vLLM.
"""

from __future__ import annotations

__version__ = "0.1.0"
