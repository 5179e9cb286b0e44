"""What every hf engine is, whichever model family it loads: the class the registry's ``hf`` name
answers with (:func:`cosmos_workflow.engines.engine_class`), so its abilities are asked before a
checkpoint decides between the Pixtral path and the Qwen2.5-VL one."""

from __future__ import annotations

from cosmos_workflow.engines.base import Engine


class HFBase(Engine):
    """A transformers model loaded in this process (on a GPU where there is one, else the CPU)."""

    name = "hf"
