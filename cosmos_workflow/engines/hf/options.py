"""The hf engine's speed options (``--engine-option KEY=VALUE``), parsed once at load."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from cosmos_workflow.errors import ConfigError

logger = logging.getLogger("cosmos_workflow")

#: the values of ``decode_attention`` (kernels.DECODE_ATTENTIONS maps them to implementations)
DECODE_ATTENTIONS = ("sdpa", "flex")
#: the words a boolean option takes
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
#: the values of ``share_prefix``: off, the prefill only, or the prefill and the decoding steps
SHARE_PREFIX = ("off", "prefill", "decode")
#: the values of ``decode_step``: transformers' forward compiled whole, or one layer at a time
DECODE_STEPS = ("model", "layers")
#: the values of ``fuse_prefill``: off, or the torch.compile backend (``eager`` only traces: tests)
FUSE_BACKENDS = ("off", "inductor", "eager")

KNOWN_OPTIONS = (
    "static_cache",
    "batch_bucket",
    "compile",
    "gqa_decode",
    "decode_attention",
    "compile_cache",
    "vision_chunk",
    "prefill_chunk",
    "ignore_eos",
    "decode_loop",
    "fuse_prefill",
    "share_prefix",
    "pad_rows",
    "decode_step",
    "fold_heads",
)


@dataclass(frozen=True)
class HFOptions:
    """Speed options, from ``EngineConfig.options``; defaults depend on the device.

    ``static_cache``: preallocated KV cache; on CUDA transformers then compiles the decoding step.
    ``batch_bucket``: prompt length padded up to a multiple of this (fewer compiled shapes; on
    CUDA 16 with ``decode_loop``, whose cache length is rounded on its own, else 64).
    ``compile``: let transformers compile the decoding step when the cache is static (CUDA only).
    ``gqa_decode``: decode steps read each KV head once (see :func:`gqa_sdpa_attention`).
    ``decode_attention``: with ``gqa_decode``, the kernel of a decoding step: ``sdpa`` (the fused
    SDPA kernel over the whole static cache; the CPU default) or ``flex`` (flex_attention reading
    only the filled blocks of the cache, see ``flex_decode``; the CUDA default).
    ``compile_cache``: the folder where compiled kernels are kept across processes (see
    :func:`~cosmos_workflow.engines.hf.compile_cache.use_compile_cache`); ``off`` leaves torch's
    own settings alone.
    ``vision_chunk``: at most this many image patches per vision-tower call.
    ``prefill_chunk``: the decoder's norms and MLPs take at most this many tokens at a time.
    ``decode_loop``: with ``static_cache``, decode with the engine's own loop (``decode_loop.py``:
    no per-step host synchronisation, the next token chosen on the device) instead of
    transformers' ``generate``; on by default wherever the cache is static.
    ``fuse_prefill``: several-token calls of the decoder's RMS norms and MLPs go through compiled
    functions (``prefill.py``): ``inductor`` (the CUDA default; ``true`` means it), or ``off`` (the
    CPU default; ``false``), or ``eager`` (traced, not fused: tests).
    ``share_prefix``: with ``decode_loop``, requests of a batch that share their images (the same
    video, other prompts) prefill them once (``prefill``, or ``true``: ``shared_prefix.py``), and
    with ``decode`` (it needs ``decode_attention=flex``) the texts' prefill and each decoding step
    read each shared prefix once too, from a cache of its own (``prefix_attention.py``): a batch's
    KV cache then holds texts and answers only, and more requests fit (on a GPU a batch of mostly
    distinct videos, which that would not save memory for, decodes unshared); 4.3-4.5x ``off`` on
    an H100 with 64 prompts a clip, ``off`` by default until batches of few prompts a video are
    measured (BENCHMARKS.md).
    ``pad_rows``: with ``decode_loop``, a batch of fewer requests than the KV cache kept from the
    last batch has rows is padded up to them with copies of its shortest request (their answers
    dropped), so the compiled decoding step and its CUDA graphs are reused, not compiled again for
    a new shape: the last, smaller batch of a run (1,024 requests as 342, 342, 340 on an H100)
    compiled for 33 s and decoded at half speed without it (BENCHMARKS.md). On by default where
    the step is compiled (CUDA), off on the CPU, where every row costs its full compute.
    ``decode_step``: with ``decode_loop``, how a decoding step runs: ``layers`` (the default where
    the step is compiled, CUDA), the step written out around the decoder's layers, each layer a call
    of one compiled function (``layer_step.py``: traced once, not once a layer, when a process
    meets a new batch shape; no CUDA graphs); ``model`` (the CPU default), transformers' forward,
    compiled whole with CUDA graphs. On an H100 a new process's first step took 0.7 s against
    21-25 s, and a compiled step 1-5% longer (BENCHMARKS.md, round 3's second H100 sitting).
    ``fold_heads``: with ``share_prefix=decode``, a decoding step's attention to the shared
    prefixes runs with as many heads as KV heads, the query heads that share a KV head (4 for
    Pixtral-12B) folded into its query rows: each KV head's prefix is read once, not once per query
    head, and a group's rows are padded to whole 128-row blocks per KV head (up to 32 requests a
    group in one block), not per query head; off by default until measured on a GPU (BENCHMARKS.md).
    ``ignore_eos``: benchmark only, never for real prompts: EOS is suppressed until ``max_tokens``,
    so every answer has exactly ``max_tokens`` tokens (and is reported as cut off).
    """

    static_cache: bool
    batch_bucket: int
    compile: bool = True
    gqa_decode: bool = True
    decode_attention: str = "sdpa"
    compile_cache: str = "default"
    vision_chunk: int = 4096
    prefill_chunk: int = 16384
    ignore_eos: bool = False
    decode_loop: bool = False
    fuse_prefill: str = "off"
    share_prefix: str = "off"
    pad_rows: bool = False
    decode_step: str = "model"
    fold_heads: bool = False

    @classmethod
    def parse(cls, options: Mapping[str, str | int | float | bool | None], *, cuda: bool) -> HFOptions:
        unknown = sorted(set(options) - set(KNOWN_OPTIONS))
        if unknown:
            logger.warning("hf engine ignores options %s (it knows %s)", unknown, list(KNOWN_OPTIONS))
        static = _as_bool(options.get("static_cache"), default=cuda, name="static_cache")
        compiled = _as_bool(options.get("compile"), default=True, name="compile")
        loop = static and _as_bool(options.get("decode_loop"), default=True, name="decode_loop")
        # generate's static cache follows the padded prompt (each length compiles its own decoding
        # step); the own loop rounds its cache up itself, so prompts can be padded less
        bucket = _as_int(
            options.get("batch_bucket"), default=(16 if loop else 64) if cuda else 1, name="batch_bucket"
        )
        return cls(
            static_cache=static,
            batch_bucket=bucket,
            compile=compiled,
            gqa_decode=_as_bool(options.get("gqa_decode"), default=True, name="gqa_decode"),
            # flex measured faster on an H200 (BENCHMARKS.md); uncompiled on a CPU it is not
            decode_attention=_as_choice(
                options.get("decode_attention"),
                DECODE_ATTENTIONS,
                "flex" if cuda else "sdpa",
                "decode_attention",
            ),
            fuse_prefill=_as_choice(
                _fuse_alias(options.get("fuse_prefill")),
                FUSE_BACKENDS,
                "inductor" if cuda else "off",
                "fuse_prefill",
            ),
            compile_cache=str(options.get("compile_cache") or "default"),
            vision_chunk=_as_int(options.get("vision_chunk"), default=4096, name="vision_chunk"),
            prefill_chunk=_as_int(options.get("prefill_chunk"), default=16384, name="prefill_chunk"),
            ignore_eos=_as_bool(options.get("ignore_eos"), default=False, name="ignore_eos"),
            decode_loop=loop,
            share_prefix=_share_prefix(options.get("share_prefix")) if loop else "off",
            pad_rows=loop and _as_bool(options.get("pad_rows"), default=cuda and compiled, name="pad_rows"),
            # layer by layer where compiled: traced in under a second in a new process, not 16-18 s
            # (the H100's 200 shots: 27.6 s from process start against 54.1 s; BENCHMARKS.md)
            decode_step=_as_choice(
                options.get("decode_step"),
                DECODE_STEPS,
                "layers" if cuda and compiled else "model",
                "decode_step",
            ),
            fold_heads=_as_bool(options.get("fold_heads"), default=False, name="fold_heads"),
        )

    def __post_init__(self) -> None:
        if self.share_prefix == "decode" and not (self.gqa_decode and self.decode_attention == "flex"):
            raise ConfigError(
                "share_prefix=decode reads the shared prefixes through flex decoding; add "
                "--engine-option decode_attention=flex (and leave gqa_decode on), or use share_prefix=prefill"
            )


def _share_prefix(value: str | int | float | bool | None) -> str:
    """``share_prefix``: a word of :data:`SHARE_PREFIX`, or a boolean (true: ``prefill``)."""
    if isinstance(value, bool) or str(value).lower() in TRUE_WORDS | FALSE_WORDS:
        value = "prefill" if _as_bool(value, default=False, name="share_prefix") else "off"
    return _as_choice(value, SHARE_PREFIX, "off", "share_prefix")


def _as_choice(
    value: str | int | float | bool | None, choices: tuple[str, ...], default: str, name: str
) -> str:
    if value is None:
        return default
    text = str(value).strip().lower()
    if text not in choices:
        raise ConfigError(f"engine option {name}={value!r} is not one of {', '.join(choices)}")
    return text


def _fuse_alias(value: str | int | float | bool | None) -> str | int | float | bool | None:
    """``fuse_prefill``: a boolean word means inductor (true) or off (false)."""
    text = str(value).strip().lower()
    if value is None or text not in TRUE_WORDS | FALSE_WORDS:
        return value
    return "inductor" if text in TRUE_WORDS else "off"


def _as_bool(value: str | int | float | bool | None, *, default: bool, name: str) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ConfigError(f"engine option {name}={value!r} is not a boolean; use true or false")


def _as_int(value: str | int | float | bool | None, *, default: int, name: str) -> int:
    if value is None:
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise ConfigError(f"engine option {name}={value!r} is not an integer; use e.g. 64") from None
    if number < 1:
        what = {"batch_bucket": "1 turns bucketing off", "vision_chunk": "1 means one image per call"}.get(
            name, "e.g. 16384"
        )
        raise ConfigError(f"engine option {name}={number} must be at least 1 ({what})")
    return number
