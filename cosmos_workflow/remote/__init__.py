"""Running upsampling batches for PromptSpecs: here (now) or on a remote GPU host (later).

:class:`WorkflowOrchestrator` turns specs into one batch and hands it to an executor; the local
executor runs it in this process. A remote executor (SSH + the Cosmos Docker image) plugs into
the same seam without changing the orchestrator.
"""

from __future__ import annotations

from cosmos_workflow.remote.orchestrator import WorkflowOrchestrator, build_run_options

__all__ = ["WorkflowOrchestrator", "build_run_options"]
