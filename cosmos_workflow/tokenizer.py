"""The model's own tokenizer (mistral-common), in the exact chat format the engines send.

A request is one user message: the frames as images, then the prompt text. This is what the
Cosmos-Transfer1 upsampler sends, and what vLLM's ``tokenizer_mode="mistral"`` encodes.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cosmos_workflow.errors import ConfigError
from cosmos_workflow.memo import OnceEach
from cosmos_workflow.userfiles import MiB, UserFile, check_user_file, read_user_text

TEKKEN_FILE = "tekken.json"
BUNDLED_TEKKEN = "tekken_240911.json"


@dataclass(frozen=True)
class ImageGrid:
    """How the tokenizer's image encoder sees an image."""

    patch_size: int
    max_image_size: int


@dataclass(frozen=True)
class Encoding:
    token_ids: list[int]
    pixel_values: list[np.ndarray]
    #: (t, h, w) patch grid per visual, for families whose model takes it (Qwen2.5-VL)
    grid_thw: list[tuple[int, int, int]] = field(default_factory=list)
    #: True when the visuals are one video rather than images
    video: bool = False


def bundled_tokenizer_path() -> Path:
    """Pixtral-12B's tokenizer, shipped inside the mistral-common package."""
    import mistral_common

    return Path(mistral_common.__file__).parent / "data" / BUNDLED_TEKKEN


def tokenizer_path_for(model: str | Path | None) -> Path:
    """The checkpoint's ``tekken.json`` when ``model`` is a folder holding one, else the bundled one."""
    if model is not None:
        candidate = Path(model)
        if candidate.is_file() and candidate.suffix == ".json":
            return candidate
        if (candidate / TEKKEN_FILE).is_file():
            return candidate / TEKKEN_FILE
    return bundled_tokenizer_path()


#: Where a user message's images start in its token ids: after ``<s>`` and ``[INST]``.
IMAGES_AT = 2
#: normalised images kept for frames several requests share (float32: 4x the frames' bytes; 256
#: MiB holds 85 pairs of 480x272 frames)
IMAGES_KEPT_BYTES = 256 * MiB

#: a checkpoint's tekken.json (Pixtral's is 15 MiB); mistral-common reads it itself
TOKENIZER_FILE = UserFile(
    what="tokenizer",
    max_bytes=256 * MiB,
    error=ConfigError,
    fix=f"point --model at a checkpoint folder with a valid {TEKKEN_FILE}",
)


class Tokenizer:
    """Counts and encodes requests with a Mistral tokenizer file."""

    def __init__(self, path: Path) -> None:
        from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

        check_user_file(path, TOKENIZER_FILE)
        try:
            self._tok = MistralTokenizer.from_file(str(path))
        except Exception as exc:
            raise ConfigError(
                f"cannot load tokenizer {path}: {exc}; point --model at a checkpoint "
                f"folder with a valid {TEKKEN_FILE}"
            ) from exc
        self.path = path
        encoder = image_encoder(self._tok)
        if encoder is None:
            raise ConfigError(f"tokenizer {path} has no image encoder: it is not a Pixtral tokenizer")
        config = _image_config(encoder)
        self.grid = ImageGrid(config.image_patch_size * config.spatial_merge_size, config.max_image_size)
        self._decode_options = _ignore_special_tokens(self._tok)
        text = self._tok.instruct_tokenizer.tokenizer
        self.bos_id: int = text.bos_id
        self.eos_id: int = text.eos_id
        self.pad_id: int = text.pad_id
        self.vocab_size: int = text.n_words
        ids = encoder.special_ids
        self.image_token_id: int = ids.img
        #: ([IMG], [IMG_BREAK], [IMG_END]): an image's patches, the end of each row, the end of the image
        self.image_ids: tuple[int, int, int] = (ids.img, ids.img_break, ids.img_end)
        #: read-only frames' normalised images (:meth:`_normalised`)
        self._images: OnceEach[int, tuple[np.ndarray, np.ndarray]] = OnceEach(
            IMAGES_KEPT_BYTES, lambda kept: kept[1].nbytes
        )

    def image_tokens(self, width: int, height: int) -> int:
        """Tokens for one image of this size, exactly as the tokenizer's image encoder counts."""
        cols, rows = self.image_grid_size(width, height)
        return rows * (cols + 1)

    def image_grid_size(self, width: int, height: int) -> tuple[int, int]:
        """(columns, rows) of patches, after the encoder's own cap on the long side."""
        w, h = float(width), float(height)
        ratio = max(w, h) / self.grid.max_image_size
        if ratio > 1:
            w, h = max(round(w / ratio), 1), max(round(h / ratio), 1)
        return math.ceil(w / self.grid.patch_size), math.ceil(h / self.grid.patch_size)

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one Tokenizer per run; prompts repeat in plans
    def text_tokens(self, prompt: str, system: str | None = None) -> int:
        """Tokens of the whole chat without images: BOS, [INST], the system prompt if any, the
        text, [/INST]."""
        return len(self.encode(prompt, (), system=system).token_ids)

    def encode(
        self,
        prompt: str,
        frames: Sequence[np.ndarray],
        *,
        pixel_values: bool = True,
        system: str | None = None,
    ) -> Encoding:
        """Token ids and normalised image arrays for one request (frames as RGB uint8 HxWx3).

        A ``system`` prompt is a mistral-common ``SystemMessage``: this tokenizer puts its text
        and a blank line at the start of the user message, before the images.

        Without ``pixel_values`` (for engines that encode the images themselves, as vLLM does)
        the images are not normalised: their token runs are laid out from their sizes, where the
        image encoder puts them (after ``[INST]`` and the system prompt, before the text), the
        same ids for a fifth of the time. A unit test holds the two ways equal over many sizes.
        Read-only frames (those ``media.SharedFrames`` hands to every request that wants them)
        get their ids the same way and their normalised images computed once each while kept.
        """
        if not frames:
            return self._encode_chat(prompt, frames, system)
        if not pixel_values or all(not f.flags.writeable for f in frames):
            ids = list(self.encode(prompt, (), system=system).token_ids)
            at = IMAGES_AT + self._system_length(system)
            runs = [t for f in frames for t in self.image_run(f.shape[1], f.shape[0])]
            # read-only frames are shared by several requests (media.SharedFrames): each normalised once
            pixels = [self._normalised(f) for f in frames] if pixel_values else []
            return Encoding(token_ids=[*ids[:at], *runs, *ids[at:]], pixel_values=pixels)
        return self._encode_chat(prompt, frames, system)

    def _normalised(self, frame: np.ndarray) -> np.ndarray:
        """The image encoder's normalised array of a read-only frame, computed once while kept (by
        the frame object: the kept entry holds it, so no other frame has its id meanwhile)."""
        kept = self._images.get(id(frame), lambda: (frame, self._encode_image(frame)))
        return kept[1]

    def _encode_image(self, frame: np.ndarray) -> np.ndarray:
        from PIL import Image

        image_chunk, _ = _chunk_classes()
        pixels: np.ndarray = image_encoder(self._tok)(image_chunk(image=Image.fromarray(frame))).image
        return pixels

    def _system_length(self, system: str | None) -> int:
        """Tokens the system prompt adds before the images (its text and a blank line)."""
        if not system:
            return 0
        text = self._tok.instruct_tokenizer.tokenizer
        return len(text.encode(system + "\n\n", bos=False, eos=False))

    @functools.cache  # noqa: B019 - one Tokenizer per checkpoint, cached by load_tokenizer
    def ascii_ids(self) -> frozenset[int]:
        """The ids whose text is ASCII, and EOS (:func:`ascii_token_ids`)."""
        return ascii_token_ids(self.decode_one, self.vocab_size, keep=(self.eos_id,))

    def decode_one(self, token_id: int) -> str:
        """One token's text (special tokens and partial UTF-8 bytes give non-ASCII or empty text)."""
        return self.decode([token_id])

    def image_run(self, width: int, height: int) -> list[int]:
        """One image's tokens: ``[IMG]`` per patch, ``[IMG_BREAK]`` after each row, the last one
        ``[IMG_END]``."""
        cols, rows = self.image_grid_size(width, height)
        img, img_break, img_end = self.image_ids
        run = ([img] * cols + [img_break]) * rows
        run[-1] = img_end
        return run

    def _encode_chat(self, prompt: str, frames: Sequence[np.ndarray], system: str | None = None) -> Encoding:
        from mistral_common.protocol.instruct.messages import SystemMessage, UserMessage
        from mistral_common.protocol.instruct.request import ChatCompletionRequest
        from PIL import Image

        image_chunk, text_chunk = _chunk_classes()
        chunks: list[Any] = [image_chunk(image=Image.fromarray(f)) for f in frames]
        chunks.append(text_chunk(text=prompt))
        messages: list[SystemMessage | UserMessage] = [SystemMessage(content=system)] if system else []
        messages.append(UserMessage(content=chunks))
        request: ChatCompletionRequest[SystemMessage | UserMessage] = ChatCompletionRequest(messages=messages)
        tokenized = self._tok.encode_chat_completion(request)
        return Encoding(token_ids=list(tokenized.tokens), pixel_values=list(tokenized.images))

    def decode(self, token_ids: Sequence[int]) -> str:
        text: str = self._tok.decode(list(token_ids), **self._decode_options)
        return text


def _chunk_classes() -> tuple[Any, Any]:
    """mistral-common's ``ImageChunk`` and ``TextChunk``."""
    try:  # mistral-common 1.6 and later
        from mistral_common.protocol.instruct.chunk import ImageChunk, TextChunk
    except ImportError:  # 1.5.x (the Cosmos image's) defines them beside the messages
        from mistral_common.protocol.instruct.messages import (  # type: ignore[attr-defined,no-redef]
            ImageChunk,
            TextChunk,
        )
    return ImageChunk, TextChunk


def ascii_token_ids(
    decode_one: Callable[[int], str], vocab_size: int, *, keep: Iterable[int] = ()
) -> frozenset[int]:
    """The token ids whose own text is non-empty ASCII, plus ``keep`` (the end-of-answer ids):
    what an ASCII-only answer may be made of. A token holding part of a multi-byte character
    decodes to U+FFFD on its own, so it is left out; special tokens decode to nothing and are too."""
    allowed = {i for i in range(vocab_size) if (text := decode_one(i)) and text.isascii()}
    return frozenset(allowed | set(keep))


def image_encoder(tokenizer: Any) -> Any:
    """The image encoder of a ``MistralTokenizer``, or None for a text-only tokenizer.

    mistral-common 1.6 and later call it ``image_encoder`` (``mm_encoder`` stays as a deprecated
    alias that warns); 1.5.x, the release in the Cosmos image, has only ``mm_encoder``.
    """
    instruct = tokenizer.instruct_tokenizer
    if hasattr(instruct, "image_encoder"):
        return instruct.image_encoder
    return getattr(instruct, "mm_encoder", None)


def _ignore_special_tokens(tokenizer: Any) -> dict[str, Any]:
    """Keyword arguments for ``decode`` that drop special tokens from the text, in any release.

    From mistral-common 1.6 ``decode`` takes the policy (and ignores by default); 1.5.x raises on
    special tokens unless the Tekken tokenizer itself is set to ignore them.
    """
    try:  # mistral-common 1.6 and later
        from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy
    except ImportError:  # 1.5.x
        from mistral_common.tokens.tokenizers.tekken import SpecialTokenPolicy  # type: ignore[attr-defined,no-redef]

    if "special_token_policy" in inspect.signature(tokenizer.decode).parameters:
        return {"special_token_policy": SpecialTokenPolicy.IGNORE}
    tokenizer.instruct_tokenizer.tokenizer.special_token_policy = SpecialTokenPolicy.IGNORE
    return {}


def _image_config(encoder: Any) -> Any:
    """The encoder's patch and size settings: ``image_config`` from 1.6 on, ``mm_config`` in 1.5.x."""
    if hasattr(encoder, "image_config"):
        return encoder.image_config
    return encoder.mm_config


@functools.lru_cache(maxsize=8)
def load_tokenizer(path: Path | None = None) -> Tokenizer:
    """A cached tokenizer; ``None`` means the Pixtral tokenizer bundled with mistral-common."""
    return Tokenizer(path or bundled_tokenizer_path())


#: the generator's text encoder's tokenizer (``--encoder-tokenizer``): T5's tokenizer.json is
#: 2.4 MB, Qwen2.5's 11 MB
ENCODER_TOKENIZER_FILE = UserFile(
    what="encoder tokenizer",
    max_bytes=64 * MiB,
    error=ConfigError,
    fix="point --encoder-tokenizer at a tokenizer folder (T5's, Reason1's) or its tokenizer.json",
)


class EncoderTokenizer:
    """Counts an answer's tokens as the generator's text encoder will see it (its special tokens
    included: T5 adds ``</s>``), from local files only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._count = _encoder_counter(path)

    def count(self, text: str) -> int:
        return self._count(text)


@functools.lru_cache(maxsize=4)
def load_encoder_tokenizer(path: Path) -> EncoderTokenizer:
    """A cached :class:`EncoderTokenizer` (one per run, shared by its threads)."""
    return EncoderTokenizer(path)


def encoder_tokenizer_file(path: Path) -> Path | None:
    """The ``tokenizer.json`` an encoder tokenizer ``path`` names (the file, or the one in the
    folder); None for a folder without one (counted through transformers)."""
    file = path / "tokenizer.json" if path.is_dir() else path
    return file if not path.is_dir() or file.exists() or file.is_symlink() else None


def _encoder_counter(path: Path) -> Callable[[str], int]:
    """``tokenizer.json`` (the file, or in the folder) through ``tokenizers``; a folder without
    one (a sentencepiece ``spiece.model``) through transformers' AutoTokenizer, offline."""
    file = encoder_tokenizer_file(path)
    if file is not None:  # a FIFO there is refused at the door
        from tokenizers import Tokenizer as FastTokenizer

        text = read_user_text(file, ENCODER_TOKENIZER_FILE)
        try:
            fast = FastTokenizer.from_str(text)
        except Exception as exc:
            problem = f"is not a tokenizer ({' '.join(str(exc).split())})"
            raise ENCODER_TOKENIZER_FILE.refuse(file, problem) from None
        return lambda answer: len(fast.encode(answer).ids)
    try:
        from transformers import AutoTokenizer

        slow = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:
        reason = " ".join(str(exc).split())
        problem = f"has no tokenizer.json, nor a tokenizer transformers can load ({reason})"
        raise ENCODER_TOKENIZER_FILE.refuse(path, problem) from None
    return lambda answer: len(slow(answer)["input_ids"])
