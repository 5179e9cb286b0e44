"""The hf engine: a loaded transformers Llava/Pixtral model, one ``generate`` call per batch."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cosmos_workflow.engines.base import EncodedRequest, EngineConfig, Generation, SamplingParams
from cosmos_workflow.engines.hf.ascii import banned_mask, banning
from cosmos_workflow.engines.hf.batch import PAD_ID, hf_batch_tensors, on_device, round_up
from cosmos_workflow.engines.hf.common import HFBase
from cosmos_workflow.engines.hf.compile_cache import use_compile_cache
from cosmos_workflow.engines.hf.decode_loop import Stops, cache_length, decoder_for
from cosmos_workflow.engines.hf.device import (
    GPU_RESERVE_BYTES,
    free_cuda,
    is_out_of_memory,
    release_failed_call,
)
from cosmos_workflow.engines.hf.flex_decode import KV_BLOCK
from cosmos_workflow.engines.hf.kernels import chunk_decoder_tokens, chunk_vision_tower, use_gqa_decode
from cosmos_workflow.engines.hf.options import HFOptions
from cosmos_workflow.engines.hf.prefix_attention import GROUP_BUCKET
from cosmos_workflow.engines.hf.shared_prefix import (
    PrefixGroups,
    SharedBatch,
    group_prefixes,
    shared_batch_tensors,
)
from cosmos_workflow.errors import ConfigError, EngineError, GPUOutOfMemoryError
from cosmos_workflow.tokenizer import TEKKEN_FILE, Tokenizer, load_tokenizer, tokenizer_path_for

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("cosmos_workflow")


@dataclass(frozen=True)
class TokenBytes:
    """GPU bytes per token: its KV cache over all layers, and its prefill activations."""

    kv: int
    activations: int


def request_bytes(sizes: TokenBytes, slots: tuple[int, int]) -> int:
    """One request's share of a batch's memory: its KV cache (``slots``: its bucketed prompt
    tokens and its cache slots) and its prefill activations. (The cascade's prefill gathers
    prefixes for a few requests at a time: prefix_attention.PREFILL_ROWS, within the reserve.)"""
    tokens, cache = slots
    return cache * sizes.kv + tokens * sizes.activations


def prefixes_bytes(sizes: TokenBytes, prefix_tokens: int, prefixes: int) -> int:
    """The shared prefixes' memory: their own KV cache (whole blocks, groups rounded up as the
    cascade rounds them; twice while it pads them) and their prefill's activations."""
    slots = round_up(prefix_tokens, KV_BLOCK)
    groups = round_up(prefixes, GROUP_BUCKET)
    return 2 * groups * slots * sizes.kv + prefixes * prefix_tokens * sizes.activations


def cascade_holds_less(
    sizes: TokenBytes,
    prefix_tokens: int,
    prefixes: int,
    rows: int,
    text: tuple[int, int],
    whole: tuple[int, int],
) -> bool:
    """Whether ``rows`` requests decoded over their ``prefixes`` shared prefixes of up to
    ``prefix_tokens`` (``share_prefix=decode``: each prefix's cache once, a row's ``text`` slots
    for its text and answer) hold no more memory than the same rows decoded plain (``whole``
    slots a row: its prompt and answer). False where most requests have a prefix of their own:
    the prefixes' cache then costs more than the rows it saves (it is counted twice while padded)."""
    shared = prefixes_bytes(sizes, prefix_tokens, prefixes) + rows * request_bytes(sizes, text)
    return shared <= rows * request_bytes(sizes, whole)


class HFEngine(HFBase):
    """A loaded transformers Llava/Pixtral model; one ``generate`` call per batch."""

    def __init__(
        self, config: EngineConfig, *, model: Any, checkpoint: Path | None, options: HFOptions
    ) -> None:
        super().__init__(config)
        self._model: Any = model
        self.checkpoint = checkpoint
        self.options = options
        self._tokenizer: Tokenizer = load_tokenizer(tokenizer_path_for(checkpoint))
        self._ascii_mask: torch.Tensor | None = None
        self._check_max_model_len()

    @property
    def shares_prefixes(self) -> bool:  # type: ignore[override]
        return self.options.share_prefix != "off"

    @property
    def tokenizer_path(self) -> Path | None:
        if self.checkpoint is None:
            return None
        path = self.checkpoint / TEKKEN_FILE
        return path if path.is_file() else None

    def with_options(self, options: Mapping[str, str | int | float | bool | None]) -> HFEngine:
        """Another engine on the same loaded model with other speed options, e.g. to compare
        settings without loading the weights twice. ``gqa_decode``, ``decode_attention``,
        ``vision_chunk`` and ``compile`` belong to the shared model: the newest engine's values hold for both.
        Each engine may be closed on its own.
        """
        self._require_open()
        merged = {**self.config.options, **options}
        parsed = HFOptions.parse(merged, cuda=self.device.type == "cuda")
        use_gqa_decode(self._model, parsed.gqa_decode, parsed.decode_attention)
        chunk_vision_tower(self._model, parsed.vision_chunk)
        chunk_decoder_tokens(self._model, parsed.prefill_chunk, parsed.fuse_prefill)
        self._model.generation_config.disable_compile = not parsed.compile
        if parsed.compile and self.device.type == "cuda":
            use_compile_cache(parsed.compile_cache)
        config = self.config.model_copy(update={"options": merged})
        return HFEngine(config, model=self._model, checkpoint=self.checkpoint, options=parsed)

    def max_batch_size(
        self, prompt_tokens: int, max_tokens: int, *, prefix_tokens: int = 0, prefixes: int = 0
    ) -> int:
        """How many requests of ``prompt_tokens`` fit on this GPU now, with ``max_tokens`` answers.

        Each needs its KV cache (static: the bucketed prompt plus the answer) and its share of
        the prefill activations (hidden states and residuals, q/k/v and the 4x K/V copy SDPA
        makes; the MLPs run in ``prefill_chunk`` pieces). Counted against the memory free now (plus
        the KV cache the last batch left, which a batch of another shape replaces), less a fixed reserve.
        With ``share_prefix=decode`` and ``prefixes`` > 0 (at most that many distinct shared prefixes
        of up to ``prefix_tokens`` in a batch; the rest of ``prompt_tokens`` is a request's text), a
        request's rows hold its text and answer only, and the prefixes are counted once each.
        On the CPU there is no such limit that matters; 8 is returned.
        """
        self._require_open()
        if self.device.type != "cuda":
            return 8
        import torch

        free, _ = torch.cuda.mem_get_info(self.device)
        free += decoder_for(self._model).cache_bytes()  # the last batch's cache goes if the shape changes
        budget = free - GPU_RESERVE_BYTES
        sizes = self._token_bytes()
        if prefixes and self.options.share_prefix == "decode":
            budget -= prefixes_bytes(sizes, prefix_tokens, prefixes)
            prompt_tokens -= prefix_tokens
        return max(1, int(budget // request_bytes(sizes, self._slots(prompt_tokens, max_tokens))))

    def _slots(self, prompt_tokens: int, max_tokens: int) -> tuple[int, int]:
        """A request's prompt tokens as bucketed, and its KV-cache slots."""
        tokens = round_up(prompt_tokens, self.options.batch_bucket)
        return tokens, cache_length(tokens, max_tokens) if self.options.decode_loop else tokens + max_tokens

    def _token_bytes(self) -> TokenBytes:
        text = self._model.config.text_config
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        return TokenBytes(
            kv=2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * 2,
            # hidden states and residuals, q/k/v and SDPA's 4x K/V copy; MLPs run in prefill_chunk pieces
            activations=(6 * text.hidden_size + 4 * text.num_attention_heads * head_dim) * 2,
        )

    @property
    def device(self) -> torch.device:
        self._require_open()
        device: torch.device = self._model.device
        return device

    def _check_max_model_len(self) -> None:
        limit = getattr(self._model.config.text_config, "max_position_embeddings", None)
        if limit is not None and self.config.max_model_len > limit:
            raise ConfigError(
                f"max_model_len {self.config.max_model_len} exceeds what {self.checkpoint} supports "
                f"({limit} positions); pass --max-model-len {limit} or less"
            )

    def generate(self, requests: Sequence[EncodedRequest], sampling: SamplingParams) -> list[Generation]:
        self._require_open()
        results: list[Generation | None] = [self._reject_if_too_long(r, sampling) for r in requests]
        runnable = [i for i, result in enumerate(results) if result is None]
        if runnable:
            started = time.perf_counter()
            batch = [requests[i] for i in runnable]
            produced = self._generate_batch(self._padded(batch), sampling)[: len(batch)]
            logger.info(
                "hf engine on %s: %d requests, %d prompt tokens, %.2f s",
                self.device,
                len(runnable),
                sum(requests[i].num_tokens for i in runnable),
                time.perf_counter() - started,
            )
            for index, generation in zip(runnable, produced, strict=True):
                results[index] = generation
        return [result for result in results if result is not None]

    def _padded(self, batch: list[EncodedRequest]) -> list[EncodedRequest]:
        """``batch``, with ``pad_rows``, padded up to the rows of the KV cache the decoder kept (whose
        compiled step and CUDA graphs have those rows) with copies of its shortest request; the
        caller drops their answers. A copy never widens the batch, so a batch that needs no more
        cache slots decodes on the kept cache and graphs instead of compiling a new shape."""
        rows = decoder_for(self._model).cached_rows() if self.options.pad_rows else None
        if rows is None or rows <= len(batch):
            return batch
        logger.info(
            "hf engine: %d requests padded to the %d rows of the compiled decoding step (the copies' "
            "answers are dropped)",
            len(batch),
            rows,
        )
        shortest = min(batch, key=lambda r: r.num_tokens)
        return [*batch, *[shortest] * (rows - len(batch))]

    def _reject_if_too_long(self, request: EncodedRequest, sampling: SamplingParams) -> Generation | None:
        limit = self.config.max_model_len
        if request.num_tokens + sampling.max_tokens <= limit:
            return None
        message = (
            f"request {request.key!r} has {request.num_tokens} prompt tokens; with max_tokens "
            f"{sampling.max_tokens} it exceeds max_model_len {limit}; use fewer or smaller frames, "
            "a lower max_tokens, or a larger --max-model-len"
        )
        return Generation.failed(message, prompt_tokens=request.num_tokens, kind="context_length")

    def _generate_batch(
        self, requests: Sequence[EncodedRequest], sampling: SamplingParams
    ) -> list[Generation]:
        import torch

        inputs = self._inputs(requests, sampling.max_tokens)
        try:
            with torch.inference_mode(), self._seeded(sampling.seed):
                new_tokens = self._decode(inputs, sampling)
        except (RuntimeError, ValueError) as exc:
            if is_out_of_memory(exc, torch):
                del inputs
                decoder_for(self._model).close()
                release_failed_call(exc, torch)
                tokens = sum(r.num_tokens for r in requests)
                raise GPUOutOfMemoryError(
                    f"a batch of {len(requests)} requests ({tokens} prompt tokens) did not fit in "
                    f"{self.device} memory; retry with a smaller --batch-size"
                ) from exc
            if isinstance(inputs, SharedBatch):
                del inputs
                self._stop_sharing(exc)
                return self._generate_batch(requests, sampling)
            raise EngineError(
                f"transformers generate failed on a batch of {len(requests)}: {exc}; rerun with "
                "--batch-size 1 to find the request that triggers it"
            ) from exc
        return [
            self._to_generation(r, tokens, sampling) for r, tokens in zip(requests, new_tokens, strict=True)
        ]

    def _stop_sharing(self, exc: BaseException) -> None:
        """A shared batch failed for another reason than memory (on an H100 with torch 2.11 the
        cascade's compiled attention once found no kernel for its shapes): this engine decodes
        without shared prefixes from now on, the same answers at the unshared speed, instead of
        the runner retrying every request of the batch alone. One warning says why."""
        logger.warning(
            "hf engine: share_prefix=%s failed on this machine (%s: %s); decoding without shared "
            "prefixes from now on (the same answers, more memory a request): report it with the "
            "torch version, or run with --engine-option share_prefix=off",
            self.options.share_prefix,
            type(exc).__name__,
            str(exc).splitlines()[0][:300] if str(exc) else "",
        )
        decoder_for(self._model).close()
        self.options = replace(self.options, share_prefix="off")

    def _inputs(self, requests: Sequence[EncodedRequest], max_tokens: int) -> dict[str, Any] | SharedBatch:
        """The batch's model inputs on the device: with ``share_prefix``, a :class:`SharedBatch`
        when some requests share their images (and, decoding over shared prefixes on a GPU, that
        holds no more memory than the plain batch: :meth:`_cascade_fits`), else the left-padded batch."""
        bucket = self.options.batch_bucket
        groups = group_prefixes(requests, self._tokenizer.image_ids[2]) if self.shares_prefixes else None
        if groups is not None and not self._cascade_fits(requests, groups, max_tokens):
            logger.info(
                "hf engine: %d requests with %d distinct prefixes decode unshared (the prefixes' own "
                "cache would take more memory than it saves)",
                len(requests),
                len(groups.leaders),
            )
            groups = None
        if groups is not None:
            logger.info(
                "hf engine: %d requests share %d prefixes (%d prompt tokens not prefilled again)",
                len(requests),
                len(groups.leaders),
                groups.shared_tokens,
            )
            return shared_batch_tensors(requests, groups, PAD_ID, bucket=bucket).to(
                self.device, self._model.dtype
            )
        return on_device(hf_batch_tensors(requests, PAD_ID, bucket=bucket), self.device, self._model.dtype)

    def _cascade_fits(
        self, requests: Sequence[EncodedRequest], groups: PrefixGroups, max_tokens: int
    ) -> bool:
        """With ``share_prefix=decode`` on a GPU: whether the batch's shared decoding holds no more
        memory than its plain decoding (:func:`cascade_holds_less`). The runner sizes a batch for
        the larger of both fits, so a batch of mostly distinct videos may be sized for the plain
        one, which its shared decoding would not fit. (On the CPU, where batches are not sized from
        memory, and for the shared prefill alone, the prefixes are always shared.)"""
        if self.options.share_prefix != "decode" or self.device.type != "cuda":
            return True
        prefix = max(groups.split[leader] for leader in groups.leaders)
        prompt = max(r.num_tokens for r in requests)
        text = max(r.num_tokens - at for r, at in zip(requests, groups.split, strict=True))
        return cascade_holds_less(
            self._token_bytes(),
            prefix,
            len(groups.leaders),
            len(requests),
            self._slots(text, max_tokens),
            self._slots(prompt, max_tokens),
        )

    def _decode(self, inputs: dict[str, Any] | SharedBatch, sampling: SamplingParams) -> list[list[int]]:
        """Each request's answer tokens: through the engine's own loop (``decode_loop``; a shared
        prefill is only made for it) or transformers' ``generate``."""
        if isinstance(inputs, dict) and not self.options.decode_loop:
            output = self._model.generate(**inputs, **self._generate_kwargs(sampling))
            new_tokens: list[list[int]] = output[:, inputs["input_ids"].shape[1] :].tolist()
            return new_tokens
        stops = Stops(
            eos_id=self._tokenizer.eos_id,
            pad_id=PAD_ID,
            ignore_eos=self.options.ignore_eos,
            banned=self._banned() if sampling.ascii_only else None,
        )
        compiled = self.options.compile and self.device.type == "cuda"
        flex = self.options.gqa_decode and self.options.decode_attention == "flex"
        cascade = self.options.share_prefix == "decode"
        decoder = decoder_for(self._model)
        layers = self.options.decode_step == "layers"
        tokens = decoder.decode(
            inputs,
            sampling,
            stops,
            compiled=compiled,
            flex=flex,
            cascade=cascade,
            layers=layers,
            fold_heads=self.options.fold_heads,
        )
        answers: list[list[int]] = tokens.tolist()
        return answers

    def _generate_kwargs(self, sampling: SamplingParams) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_tokens,
            "pad_token_id": PAD_ID,
            "eos_token_id": self._tokenizer.eos_id,
        }
        if sampling.temperature > 0:
            # top_k=0: transformers defaults to 50, the upsampler (vLLM) samples from every token
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None)
        if self.options.static_cache:
            kwargs["cache_implementation"] = "static"
        if self.options.ignore_eos:
            kwargs["min_new_tokens"] = sampling.max_tokens  # benchmark only: EOS masked until the end
        if sampling.ascii_only:
            kwargs |= banning(self._banned())
        return kwargs

    def _banned(self) -> torch.Tensor:
        """The tokens an ASCII-only answer never uses, as a mask over the model's vocabulary."""
        if self._ascii_mask is None:
            vocab = self._model.config.text_config.vocab_size
            self._ascii_mask = banned_mask(self._tokenizer.ascii_ids(), vocab, self.device)
        return self._ascii_mask

    @contextmanager
    def _seeded(self, seed: int | None) -> Iterator[None]:
        """Seed the sampler for this call only, leaving the process' random state untouched."""
        if seed is None:
            yield
            return
        import torch

        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    def _to_generation(
        self, request: EncodedRequest, tokens: list[int], sampling: SamplingParams
    ) -> Generation:
        eos = self._tokenizer.eos_id
        stopped = eos in tokens
        answer = tokens[: tokens.index(eos)] if stopped else tokens[: sampling.max_tokens]
        return Generation(
            text=self._tokenizer.decode(answer),
            finish_reason="stop" if stopped else "length",
            prompt_tokens=request.num_tokens,
            completion_tokens=len(answer) + (1 if stopped else 0),
        )

    def _require_open(self) -> None:
        if self._model is None:
            raise EngineError("the hf engine was closed; load it again with load_engine(config)")

    def close(self) -> None:
        if self._model is None:
            return
        decoder_for(self._model).close()
        self._model = None
        import torch

        free_cuda(torch)
