"""What every hf engine is, whichever model family it loads: the class the registry's ``hf`` name
answers with (:func:`cosmos_workflow.engines.engine_class`), so its abilities are asked before a
checkpoint decides between the Pixtral path and the Qwen2.5-VL one."""

from __future__ import annotations

from collections.abc import Mapping

from cosmos_workflow.engines.base import Engine
from cosmos_workflow.engines.hf.options import HFOptions
from cosmos_workflow.errors import ConfigError


class HFBase(Engine):
    """A transformers model loaded in this process (on a GPU where there is one, else the CPU)."""

    name = "hf"
    loads_in_background = True

    @classmethod
    def shares_prefixes_with(cls, options: Mapping[str, str | int | float | bool | None]) -> bool:
        """With ``share_prefix`` on, as it would be parsed on a GPU (options the engine would
        refuse share nothing: the engine's own load says why)."""
        try:
            return HFOptions.parse(options, cuda=True).share_prefix != "off"
        except ConfigError:
            return False
