"""PromptSpecManager: the spec file store plus ``upsample_prompt`` (the seed's method)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cosmos_workflow.config import options_from_keywords
from cosmos_workflow.errors import ItemError
from cosmos_workflow.specs.prompt_spec import PromptSpec
from cosmos_workflow.specs.store import SpecStore, StoredSpec
from cosmos_workflow.workflow.spec_runs import WORK_DIR, upsample_stored

if TYPE_CHECKING:
    from cosmos_workflow.config import RunOptions
    from cosmos_workflow.executors import Executor


class PromptSpecManager(SpecStore):
    """Create, list, load and save specs (see :class:`SpecStore`), and upsample one."""

    def upsample_prompt(
        self,
        spec: PromptSpec,
        options: RunOptions | None = None,
        *,
        path: Path | None = None,
        executor: Executor | None = None,
    ) -> PromptSpec:
        """Upsample one spec, save it, and return it (``prompt`` keeps the original text).

        Without ``options`` they come from the config file and the environment
        (:func:`cosmos_workflow.config.options_from_keywords`). Raises :class:`ItemError` with the
        reason when the item fails; the file is then unchanged.
        """
        output = self.specs_dir / WORK_DIR / f"{spec.id}.json"
        options = options or options_from_keywords(output=output)
        target = path or self.path_for(spec)
        if not target.exists():
            self.save(spec, target)
        summary = upsample_stored(
            [StoredSpec(target, spec)],
            options,
            output=output,
            executor=executor,
        )
        outcome = summary.outcomes[0]
        if outcome.spec is None or not outcome.updated:
            raise ItemError(f"{spec.name}: {outcome.reason}", item=spec.name)
        return outcome.spec
