"""The default engine: vLLM where it can run (installed and a CUDA GPU), transformers elsewhere.

vLLM is what the Cosmos image ships and is the faster engine, measured: on one H200 the same 1,024
requests ran at 35.9 requests/s through ``--engine vllm`` (vLLM 0.26.0) and at 6.9 through
``--engine hf`` in the same sitting (10.4 with its kernels compiled beforehand; BENCHMARKS.md, "vLLM
beside the hf engine"); over 16 distinct clips, 31.1 against 21.4 with ``share_prefix=decode``
("The H200 lease of round 3"); Qwen2.5-VL-7B at 22.8 against 1.3. The transformers engine runs
everywhere else, including CPU-only machines with the tiny model.
"""

from __future__ import annotations

import logging

from cosmos_workflow.engines.base import Engine, EngineConfig
from cosmos_workflow.families import family_name

#: the families ``--engine vllm`` serves (engines/vllm.py's FAMILIES; that module imports vLLM lazily)
VLLM_FAMILIES = ("pixtral", "qwen2_5_vl")

logger = logging.getLogger("cosmos_workflow")


def load(config: EngineConfig) -> Engine:
    """Load the engine :func:`choose_engine` picks, with the rest of ``config`` unchanged."""
    from cosmos_workflow.engines import load_engine

    name, reason = choose_engine()
    if name == "vllm" and family_name(config.model) not in VLLM_FAMILIES:
        name, reason = "hf", f"the vllm engine does not serve {family_name(config.model)} checkpoints yet"
    logger.info("engine auto: using %s (%s)", name, reason)
    return load_engine(config.model_copy(update={"engine": name}))


def choose_engine() -> tuple[str, str]:
    """The engine name to use here, and why."""
    if not _cuda_available():
        return "hf", "no CUDA GPU visible to torch"
    try:
        import vllm  # noqa: F401 - only probing whether it imports
    except Exception as exc:  # vLLM can fail to import in many ways (missing, CUDA/ABI mismatch)
        return "hf", f"vllm cannot be imported: {type(exc).__name__}: {exc}"
    return "vllm", "vllm is installed and a CUDA GPU is visible"


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    available: bool = torch.cuda.is_available()
    return available
