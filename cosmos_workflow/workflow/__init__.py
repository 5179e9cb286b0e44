"""The spec workflow, above the api: PromptSpecManager.upsample_prompt, WorkflowOrchestrator
(the seed's ``upsample_prompts_batch``) and spec-folder runs (``upsample-prompts --input-dir``)."""

from __future__ import annotations

from cosmos_workflow.workflow.manager import PromptSpecManager
from cosmos_workflow.workflow.orchestrator import WorkflowOrchestrator
from cosmos_workflow.workflow.spec_runs import upsample_spec_dir, upsample_specs

__all__ = ["PromptSpecManager", "WorkflowOrchestrator", "upsample_spec_dir", "upsample_specs"]
