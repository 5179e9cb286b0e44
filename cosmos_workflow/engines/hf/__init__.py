"""The Hugging Face transformers engine: a local Llava/Pixtral checkpoint, batched ``generate``.

The model is fed with mistral-common's token ids and image arrays exactly as the planner
counted them (image placeholders are ordinary ids in the sequence), so no transformers
processor, and no torchvision, is involved. Batches are left-padded; images of different sizes
are zero-padded into one tensor and their real sizes passed alongside, as Pixtral expects.

Speed on CUDA (issue 7, figures in BENCHMARKS.md): a static KV cache lets transformers compile the
decoding step (CUDA graphs) once per shape; padding the prompt length up to a bucket limits how
many shapes (and compilations) occur. Two changes to the stock transformers path matter at large
batches: one-token decoding steps of grouped-query attention read each KV head once instead of
through transformers' 4x ``repeat_kv`` copy (``gqa_decode``), and the Pixtral vision tower runs a
few images at a time (``vision_chunk``) instead of one sequence of every patch in the batch, whose
dense block mask alone would need tens of GB at batch 128.

Files: ``options`` (speed options), ``batch`` (packing requests into tensors), ``device`` (device
choice, GPU memory, out-of-memory detection), ``kernels`` (the GQA attention kernel and the chunking
patches), ``flex_decode`` (decode attention over the filled blocks of the KV cache),
``compile_cache`` (where compiled kernels are kept across processes), ``loading`` (checkpoint
resolution, loading, the full-size random build), ``common`` (what every hf engine is),
``engine`` (the Pixtral engine class), ``qwen`` (the Qwen2.5-VL one). Importing this
package imports neither torch nor transformers.
"""

from __future__ import annotations

from cosmos_workflow.engines.hf.batch import PAD_ID, hf_batch_tensors
from cosmos_workflow.engines.hf.common import HFBase
from cosmos_workflow.engines.hf.engine import HFEngine
from cosmos_workflow.engines.hf.flex_decode import filled_block_mask, flex_decode_attention, flex_decode_mask
from cosmos_workflow.engines.hf.kernels import (
    FLEX_ATTENTION,
    GQA_ATTENTION,
    chunk_decoder_tokens,
    chunk_vision_tower,
    gqa_flex_attention,
    gqa_sdpa_attention,
    use_gqa_decode,
)
from cosmos_workflow.engines.hf.loading import INSTALL_HINT, TINY_MODEL, load, resolve_checkpoint
from cosmos_workflow.engines.hf.options import KNOWN_OPTIONS, HFOptions

__all__ = [
    "FLEX_ATTENTION",
    "GQA_ATTENTION",
    "INSTALL_HINT",
    "KNOWN_OPTIONS",
    "PAD_ID",
    "TINY_MODEL",
    "HFBase",
    "HFEngine",
    "HFOptions",
    "chunk_decoder_tokens",
    "chunk_vision_tower",
    "filled_block_mask",
    "flex_decode_attention",
    "flex_decode_mask",
    "gqa_flex_attention",
    "gqa_sdpa_attention",
    "hf_batch_tensors",
    "load",
    "resolve_checkpoint",
    "use_gqa_decode",
]
