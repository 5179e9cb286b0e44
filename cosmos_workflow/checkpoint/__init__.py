"""Checkpoints: Mistral-format Pixtral -> Hugging Face Llava, and the per-control variant choice.

``params`` reads and checks params.json; ``convert`` writes the Hugging Face checkpoint the ``hf``
engine loads; ``variants`` picks a folder of the older per-control layout; ``discovery`` finds the
upsampler when no model is named. Importing this package imports neither torch nor transformers.
"""

from __future__ import annotations

from cosmos_workflow.checkpoint.convert import MISTRAL_WEIGHTS, convert_checkpoint, hf_config
from cosmos_workflow.checkpoint.params import MISTRAL_PARAMS, PixtralParams, read_params
from cosmos_workflow.checkpoint.variants import CONTROL_VARIANTS, pick_variant

__all__ = [
    "CONTROL_VARIANTS",
    "MISTRAL_PARAMS",
    "MISTRAL_WEIGHTS",
    "PixtralParams",
    "convert_checkpoint",
    "hf_config",
    "pick_variant",
    "read_params",
]
