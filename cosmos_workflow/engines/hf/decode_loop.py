"""The engine's own decoding loop (``decode_loop=true``): transformers' model, not its ``generate``.

``generate`` pays host time at every decoding step that the GPU waits for: it rebuilds the step's
mask, runs its logits processors and stopping checks in Python, and asks the GPU whether every
answer has ended (a synchronisation) before it launches the next step. With a static cache and a
compiled, CUDA-graphed forward that host time was a third of each step on an H200.

Here a batch is: one prefill (eager, as ``generate`` does it), then one call per token of the same
compiled forward ``generate`` uses (``model.get_compiled_call``), with everything around it kept
on the GPU and launched ahead of it:

- the static KV cache is made once and reset in place for each next batch of the same size that
  fits in it (the CUDA graphs recorded on its buffers stay valid). Its length is the prompt plus
  ``max_tokens`` rounded up to :data:`CACHE_BLOCK` slots, so prompts padded to a small bucket
  (little padding in the prefill) still share one decoding-step shape;
- the step's mask is a (batch, cache slots) tensor updated in place (one slot a step); for
  ``decode_attention=flex`` it becomes the block mask of the filled blocks (flex_decode);
- the token is chosen on the GPU (greedy, or temperature and top-p sampling as ``generate`` does),
  finished answers are padded there;
- the host asks whether every answer has ended once every :data:`CHECK_EVERY` steps only, so it
  runs ahead of the GPU instead of waiting for it;
- while it decodes, Python hands the GIL over every :data:`SWITCH_INTERVAL` seconds instead of
  every 5 ms. PyTorch releases the GIL at each operator, so beside the runner's preprocessing
  threads (the next batches' videos) each of the step's operators may wait a whole interval for
  it; the host must stay ahead of the GPU (BENCHMARKS.md, round 3).

With greedy decoding the answers are those of ``generate`` token for token (tested on the CPU;
BENCHMARKS.md for the GPU): the same forward, the same positions and masks, the same choice.
"""

from __future__ import annotations

import inspect
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cosmos_workflow.engines.base import SamplingParams
from cosmos_workflow.engines.hf.batch import round_up
from cosmos_workflow.engines.hf.flex_decode import KV_BLOCK
from cosmos_workflow.engines.hf.layer_step import LayerStep
from cosmos_workflow.engines.hf.prefix_attention import attach, detach, prefix_layers
from cosmos_workflow.engines.hf.shared_prefix import SharedBatch

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

#: the host checks whether every answer has ended once per this many steps
CHECK_EVERY = 16
#: seconds between GIL hand-overs while decoding (Python's default is 0.005)
SWITCH_INTERVAL = 0.0002
#: the KV cache's length is rounded up to a multiple of this (of flex_decode.KV_BLOCK: blocks
#: never filled are never read by the flex decode attention)
CACHE_BLOCK = 256


def cache_length(prompt: int, max_tokens: int) -> int:
    """KV-cache slots for a batch whose (padded) prompts have ``prompt`` tokens."""
    return round_up(prompt + max_tokens, CACHE_BLOCK)


@dataclass(frozen=True)
class Stops:
    """How answers end: the EOS and padding ids, and whether EOS is suppressed (``ignore_eos``);
    ``banned``: a (vocabulary,) bool mask of tokens never chosen (ASCII-only answers), or None."""

    eos_id: int
    pad_id: int
    ignore_eos: bool = False
    banned: torch.Tensor | None = None


def decoder_for(model: Any) -> StaticDecoder:
    """The model's decoder: one per loaded model, shared by every engine made on it with
    ``with_options``, so that two engines never hold two KV caches."""
    decoder = getattr(model, "_cosmos_decoder", None)
    if decoder is None:
        decoder = StaticDecoder(model)
        model._cosmos_decoder = decoder
    return decoder


class StaticDecoder:
    """Decodes batches on one loaded model with a static KV cache kept for the next batch that fits."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self._cache: Any = None
        self._cache_shape: tuple[int, int] | None = None
        self._layers: tuple[bool, LayerStep] | None = None  # (compiled, the step) for decode_step=layers
        parameters = inspect.signature(model.forward).parameters
        # transformers 5.2x names the cache argument ``cache``, 5.17 ``past_key_values``
        self._cache_name = "cache" if "cache" in parameters else "past_key_values"

    def decode(
        self,
        inputs: dict[str, Any] | SharedBatch,
        sampling: SamplingParams,
        stops: Stops,
        *,
        compiled: bool,
        flex: bool,
        cascade: bool = False,
        layers: bool = False,
        fold_heads: bool = False,
    ) -> torch.Tensor:
        """Answer tokens (batch, ``sampling.max_tokens``) on the model's device, padded after EOS.

        ``inputs``: the batch's model inputs, or a :class:`SharedBatch` (requests that share their
        images prefill them once: ``shared_prefix``). ``compiled``: decoding steps through the
        compiled forward (CUDA graphs); ``flex``: their attention reads a block mask of the filled
        cache blocks (decode_attention=flex); ``cascade`` (with ``flex`` and a SharedBatch): it
        reads each shared prefix once (``prefix_attention``), not once per request, and so does the
        prefill of the texts after it: the batch's KV cache then holds each request's text and
        answer only, not its copy of the prefix (512 slots a request instead of 1,536 for Pixtral
        at two 480x272 frames, a 1,090-token prompt and a 300-token answer). ``layers``: each
        decoding step one decoder layer at a time through one compiled function (``layer_step``),
        not transformers' whole forward compiled. ``fold_heads`` (with the cascade): the prefix
        part of a decoding step runs with the query heads of a KV head as its query rows.
        """
        full = inputs.attention_mask if isinstance(inputs, SharedBatch) else inputs["attention_mask"]
        positions = (full.cumsum(-1) - 1).masked_fill(full == 0, 0)
        compact = isinstance(inputs, SharedBatch) and cascade and flex
        # the cascade reads each prefix from a cache of its own: the batch's rows hold texts and answers only
        mask = full[:, inputs.prefix_width :] if isinstance(inputs, SharedBatch) and compact else full
        batch, prompt = mask.shape
        cache, length = self._static_cache(batch, cache_length(prompt, sampling.max_tokens))
        state = _Answers(batch, sampling.max_tokens, stops, mask.device)
        allowed = _allowed(mask, length)
        forward = self._layer_step(compiled) if layers else self._forward(compiled)
        slots = _slots(prompt, sampling.max_tokens, mask.device)
        last = positions[:, -1]
        clock = _PhaseClock(mask.device)
        try:
            if isinstance(inputs, SharedBatch):
                fold = self._heads_per_kv() if fold_heads else 1
                logits = self._prefill_shared(inputs, positions, cache, cascade=compact, fold=fold)
            else:
                logits = self._prefill(inputs, positions, cache)
            token = state.record(0, choose(logits, sampling, stops))
            clock.prefilled()
            steps = 0
            with responsive_host():
                for step in range(1, sampling.max_tokens):
                    if step % CHECK_EVERY == 0 and not stops.ignore_eos and state.all_ended():
                        break
                    allowed[:, prompt + step - 1] = True
                    step_mask = _block_mask(allowed) if flex else allowed[:, None, None, :]
                    if isinstance(forward, LayerStep):
                        logits = forward(token, last + step, step_mask, cache, slots[step - 1 : step])
                    else:
                        logits = self._step(forward, token, last + step, step_mask, cache, compiled=compiled)
                    token = state.record(step, choose(logits, sampling, stops))
                    steps = step
                    if step == 1:
                        clock.first_step()
            clock.decoded(batch, prompt, steps)
        finally:
            if compact:
                detach(self._model)
            if compiled:
                _reset_output_capture()
        return state.tokens

    def _prefill(self, inputs: dict[str, Any], positions: torch.Tensor, cache: Any) -> torch.Tensor:
        """The prompts (and their images) into the cache, eagerly; the last position's logits."""
        output = self._model(
            **inputs, position_ids=positions, logits_to_keep=1, use_cache=True, **{self._cache_name: cache}
        )
        logits: torch.Tensor = output.logits[:, -1, :].float()
        return logits

    def _prefill_shared(
        self, shared: SharedBatch, positions: torch.Tensor, cache: Any, *, cascade: bool, fold: int
    ) -> torch.Tensor:
        """Each distinct prefix (and its images) once into a cache of its own, then each request's
        text after it; the last position's logits. ``cascade``: the prefixes' cache is attached to
        the attention modules (``prefix_attention``) and read from there by the texts' prefill and
        every decoding step, and ``cache`` holds the texts and answers only; else the prefixes'
        keys and values are copied into the rows of every request that has it, ahead of its text.
        ``positions``: the whole prompts' (prefix and text); ``fold``: the cascade's query heads
        folded into a KV head's rows (:func:`~.prefix_attention.prefix_layers`)."""
        prefixes = self._prefill_prefixes(shared)
        width = shared.prefix_width
        mask = shared.attention_mask
        if cascade:
            self._attach_prefixes(prefixes, shared, fold)
            mask = mask[:, width:]
        else:
            for index, layer in enumerate(list(prefixes.layers)):
                keys, values = layer.keys[:, :, :width], layer.values[:, :, :width]
                cache.update(keys.index_select(0, shared.rows), values.index_select(0, shared.rows), index)
        del prefixes  # with the cascade, the attention modules hold its tensors until detached
        output = self._model(
            input_ids=shared.text,
            attention_mask=mask,
            position_ids=positions[:, width:],
            logits_to_keep=1,
            use_cache=True,
            **{self._cache_name: cache},
        )
        logits: torch.Tensor = output.logits[:, -1, :].float()
        return logits

    def _prefill_prefixes(self, shared: SharedBatch) -> Any:
        """The distinct prefixes (and their images) into a static cache of their own, whole KV
        blocks long (the cascade reads it as it is: prefix_attention.prefix_layers)."""
        from transformers import StaticCache

        mask = shared.prefix["attention_mask"]
        prefixes = StaticCache(config=self._text_config(), max_cache_len=round_up(mask.shape[1], KV_BLOCK))
        self._model(
            **shared.prefix,
            position_ids=(mask.cumsum(-1) - 1).masked_fill(mask == 0, 0),
            logits_to_keep=1,
            use_cache=True,
            **{self._cache_name: prefixes},
        )
        return prefixes

    def _attach_prefixes(self, prefixes: Any, shared: SharedBatch, fold: int) -> None:
        """The shared prefill's prefix cache to the attention modules, for the cascade."""
        layers: list[Any] = list(prefixes.layers)
        keys, values = [la.keys for la in layers], [la.values for la in layers]
        mask = shared.prefix["attention_mask"]
        attach(self._model, prefix_layers(keys, values, mask, shared.rows, fold=fold))

    def _heads_per_kv(self) -> int:
        """The decoder's query heads per KV head (4 for Pixtral-12B: 32 over 8)."""
        text = self._text_config()
        heads: int = text.num_attention_heads // text.num_key_value_heads
        return heads

    def _text_config(self) -> Any:
        return self._model.config.get_text_config(decoder=True)

    def _static_cache(self, batch: int, length: int) -> tuple[Any, int]:
        """The batch's KV cache and its length: the last one, reset, when it has as many rows and at
        least ``length`` slots; else a new one of ``length`` slots."""
        if self._cache is not None and self._cache_shape is not None:
            rows, slots = self._cache_shape
            if rows == batch and slots >= length:
                self._cache.reset()
                return self._cache, slots
        from transformers import StaticCache

        self._cache = None  # let the old buffers go before the new ones are made
        self._cache = StaticCache(config=self._text_config(), max_cache_len=length)
        self._cache_shape = (batch, length)
        return self._cache, length

    def _forward(self, compiled: bool) -> Any:
        """The decoding step's forward: the model's own, or its compiled call. Its shapes stay
        transformers' default (``dynamic=None``), not static: with a sliding window in the text
        config, transformers' static cache layers keep a Python int that changes every step
        (``cumulative_length_int``), which static shapes would recompile for at every step (automatic
        dynamic shapes: once); ``pad_rows`` keeps a run's batch shapes few
        instead (a second shape recompiles the step with dynamic sizes: 33 s on an H100, and
        steps twice as slow, BENCHMARKS.md)."""
        if not compiled:
            return self._model
        return self._model.get_compiled_call(self._model.generation_config.compile_config)

    def _layer_step(self, compiled: bool) -> LayerStep:
        """The model's step layer by layer (``decode_step=layers``), made once per decoder."""
        if self._layers is None or self._layers[0] != compiled:
            self._layers = (compiled, LayerStep(self._model, compiled=compiled))
        return self._layers[1]

    def _step(
        self,
        forward: Any,
        token: torch.Tensor,
        position: torch.Tensor,
        mask: Any,
        cache: Any,
        *,
        compiled: bool,
    ) -> torch.Tensor:
        import torch

        if compiled:
            torch.compiler.cudagraph_mark_step_begin()  # type: ignore[no-untyped-call]
        output = forward(
            input_ids=token[:, None],
            attention_mask=mask,
            position_ids=position[:, None],
            use_cache=True,
            **{self._cache_name: cache},
        )
        logits: torch.Tensor = output.logits[:, -1, :].float()  # a copy: the graph's output is reused
        return logits

    def cached_rows(self) -> int | None:
        """The rows of the KV cache kept for the next batch (None when none is kept)."""
        return self._cache_shape[0] if self._cache is not None and self._cache_shape is not None else None

    def cache_bytes(self) -> int:
        """GPU memory the KV cache kept for the next batch holds (free for a batch of another shape)."""
        if self._cache is None:
            return 0
        held = [getattr(layer, name, None) for layer in self._cache.layers for name in ("keys", "values")]
        return sum(t.numel() * t.element_size() for t in held if t is not None)

    def close(self) -> None:
        """Let the KV cache go (the next batch makes a new one)."""
        self._cache = None
        self._cache_shape = None


def _reset_output_capture() -> None:
    """Undo what tracing the decoding step leaves behind in transformers 5.2x: its output collector
    (which records the vision tower's hidden states) stays a plain global set while compiling, so
    the next batch's eager prefill records nothing and fails (``IndexError`` on the hidden states).
    Reset as transformers resets it; releases without that collector have nothing to undo."""
    try:
        from transformers.utils.output_capturing import _active_collector
    except ImportError:
        return
    if getattr(_active_collector, "compiling", False):
        _active_collector.reset(None)  # type: ignore[no-untyped-call]


def _slots(prompt: int, max_tokens: int, device: Any) -> torch.Tensor:
    """The cache slot of each decoding step's token (step ``k`` writes at ``prompt + k - 1``), made
    once so that a step takes a view of it, never a copy from the host (which would wait for the GPU)."""
    import torch

    return torch.arange(prompt, prompt + max_tokens, device=device)


def _allowed(mask: torch.Tensor, length: int) -> torch.Tensor:
    """(batch, cache slots): the slots each request attends to, its prompt's so far (no padding)."""
    import torch

    allowed = torch.zeros((mask.shape[0], length), dtype=torch.bool, device=mask.device)
    allowed[:, : mask.shape[1]] = mask.bool()
    return allowed


@contextmanager
def responsive_host() -> Iterator[None]:
    """Python's GIL switch interval at :data:`SWITCH_INTERVAL` for the duration (then restored)."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(min(before, SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def _block_mask(allowed: torch.Tensor) -> Any:
    from cosmos_workflow.engines.hf.flex_decode import filled_block_mask

    return filled_block_mask(allowed)


class _PhaseClock:
    """The batch's prefill time, its first decoding step's (which compiles or loads the compiled
    step and records its CUDA graphs when the batch's shape is new to the process) and the later
    steps' mean, logged at INFO (benchmarks read them for the per-batch roofline). Off unless INFO
    is on: the timing synchronises with the GPU three times a batch."""

    def __init__(self, device: Any) -> None:
        self.on = logger.isEnabledFor(logging.INFO)
        self.device = device
        self.started = self._now() if self.on else 0.0
        self.prefill_s = 0.0
        self.first_step_s = 0.0

    def _now(self) -> float:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def prefilled(self) -> None:
        if self.on:
            self.prefill_s = self._now() - self.started

    def first_step(self) -> None:
        if not self.on:
            return
        self.first_step_s = self._now() - self.started - self.prefill_s
        if spent := compile_seconds():
            logger.info(
                "hf compile so far in this process: %s", ", ".join(f"{k} {v:.2f} s" for k, v in spent.items())
            )

    def decoded(self, batch: int, prompt: int, steps: int) -> None:
        if not self.on:
            return
        rest_s = self._now() - self.started - self.prefill_s - self.first_step_s
        logger.info(
            "hf batch timing: %d rows x %d prompt columns, prefill %.3f s, first step %.3f s, "
            "then %d steps of %.2f ms",
            batch,
            prompt,
            self.prefill_s,
            self.first_step_s,
            max(steps - 1, 0),
            1000 * rest_s / max(steps - 1, 1),
        )


#: torch's compile phases (``torch._dynamo.utils.compile_times``) logged after a batch's first step:
#: all of it, Dynamo's tracing, and the backend (AOTAutograd and Inductor, their caches included)
COMPILE_PHASES = {
    "_compile.compile_inner": "total",
    "bytecode_tracing": "dynamo tracing",
    "OutputGraph.call_user_compiler": "backend",
}


def compile_seconds() -> dict[str, float]:
    """Seconds this process spent so far in :data:`COMPILE_PHASES` (torch's private counters; empty
    where this torch lacks them or nothing was compiled)."""
    try:
        from torch._dynamo.utils import compile_times

        names, values = compile_times(repr="csv", aggregate=True)  # type: ignore[misc]
        seconds = {str(n): float(str(v)) for n, v in zip(names, values, strict=True)}
    except Exception:  # a private API: its absence or another shape costs the figure only
        return {}
    return {label: seconds[name] for name, label in COMPILE_PHASES.items() if name in seconds}


class _Answers:
    """The answer tokens of a batch, on the device, and which answers are still going."""

    def __init__(self, batch: int, max_tokens: int, stops: Stops, device: Any) -> None:
        import torch

        self.stops = stops
        self.tokens = torch.full((batch, max_tokens), stops.pad_id, dtype=torch.long, device=device)
        self.going = torch.ones(batch, dtype=torch.bool, device=device)

    def record(self, step: int, chosen: torch.Tensor) -> torch.Tensor:
        """Keep ``chosen`` as token ``step`` (padding for answers already ended); return what was kept."""
        import torch

        token = torch.where(self.going, chosen, self.stops.pad_id)
        self.tokens[:, step] = token
        self.going &= token != self.stops.eos_id
        return token

    def all_ended(self) -> bool:
        return not bool(self.going.any())


def choose(logits: torch.Tensor, sampling: SamplingParams, stops: Stops) -> torch.Tensor:
    """The next token of each row, as ``generate`` chooses it with our settings.

    ``ignore_eos`` first (EOS made impossible), the ``banned`` tokens made impossible, then greedy
    (argmax) at temperature 0, else the logits divided by the temperature, cut to the top-p
    nucleus and sampled. ``logits`` (float32) may be changed in place.
    """
    import torch

    if stops.ignore_eos:
        logits[:, stops.eos_id] = float("-inf")
    if stops.banned is not None:
        logits.masked_fill_(stops.banned[: logits.shape[-1]], float("-inf"))
    if sampling.temperature <= 0:
        return logits.argmax(dim=-1)
    if sampling.temperature != 1.0:
        logits = logits / sampling.temperature
    if sampling.top_p < 1.0:
        logits = nucleus(logits, sampling.top_p)
    return torch.multinomial(logits.softmax(dim=-1), num_samples=1).squeeze(1)


def nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Logits outside the smallest set of tokens whose probabilities reach ``top_p`` set to -inf
    (the most likely token is always kept), as transformers' top-p warper does."""
    import torch

    ascending, order = torch.sort(logits, descending=False)
    cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
    drop = cumulative <= (1 - top_p)
    drop[:, -1] = False
    return logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
