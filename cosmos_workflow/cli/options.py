"""Options shared by several commands, declared once, and how flags become settings.

Only flags given on the command line become settings (a flag left at its default does not
override the config file or the environment: see :mod:`cosmos_workflow.config`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer

from cosmos_workflow import media
from cosmos_workflow.config import ResolvedSettings, resolve_settings
from cosmos_workflow.defaults import MAX_MODEL_LEN, MAX_RESOLUTION, MAX_TOKENS, NUM_FRAMES
from cosmos_workflow.errors import UsageError


def parse_resolution(value: str) -> int | Literal["auto"]:
    if value == "auto":
        return "auto"
    try:
        number = int(value)
    except ValueError:
        raise UsageError(f"--max-resolution {value!r} is not a number; pass e.g. 480, or 'auto'") from None
    if number < 16:
        raise UsageError(f"--max-resolution {number} is below one 16-px patch; pass 16 or more")
    return number


PromptsFile = Annotated[
    Path,
    typer.Argument(help="JSON list (or .jsonl) of {name, prompt, video_path} items", show_default=False),
]
Preprocess = Annotated[
    bool,
    typer.Option(
        "--preprocess-videos/--no-preprocess",
        help="fit frames to the token budget; --no-preprocess sends them as stock Cosmos does",
    ),
]
MaxResolution = Annotated[
    str, typer.Option(help="long side cap in pixels (16-px grid), or 'auto' for the largest that fits")
]
NumFrames = Annotated[int, typer.Option(min=0, max=16, help="frames per video")]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML settings file (default: $COSMOS_WORKFLOW_CONFIG, else ./cosmos-workflow.toml if present)",
        show_default=False,
    ),
]


FrameSampling = Annotated[
    media.FrameSampling,
    typer.Option(help="'first' frames (what the Cosmos checkpoint saw in training) or spread 'uniform'ly"),
]
MaxTokens = Annotated[int, typer.Option(min=1, help="tokens reserved for the answer")]
MaxModelLen = Annotated[int, typer.Option(min=16, help="the model's context: prompt + answer")]
MaxVisionTokens = Annotated[
    int | None, typer.Option(min=1, help="cap on the frames' tokens (memory and time); default: the context")
]
Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        "--checkpoint-dir",
        help="checkpoint folder (its tekken.json is the tokenizer), 'tiny-random', or a served model name "
        "(default: checkpoints/nvidia/Cosmos-UpsamplePrompt1-12B-Transfer under $COSMOS_CHECKPOINT_DIR, "
        "else here)",
    ),
]

Offload = Annotated[
    bool,
    typer.Option(
        "--offload/--keep-loaded",
        help="free the model after the batch; --keep-loaded keeps it for the next batch of a "
        "long-lived process (the orchestrator); one command is one batch",
    ),
]
NumGpu = Annotated[int, typer.Option(min=1, help="processes, one GPU each; more than 1 starts torchrun")]
CudaDevices = Annotated[
    str | None,
    typer.Option(help="the GPUs to use, as CUDA_VISIBLE_DEVICES: e.g. 0,1 (default: all visible)"),
]

# issue 25: the refiner's preset and system prompt, answers that fit the generator's encoder
Preset = Annotated[
    str | None,
    typer.Option(
        help="predict2-refiner: Cosmos-Predict2's refiner settings (greedy, 512 new tokens, ASCII-only "
        "answers, a system prompt asking for an 80-100 word paragraph); flags, env and the config file win",
        show_default=False,
    ),
]
SystemPromptFile = Annotated[
    Path | None,
    typer.Option(help="a text file whose content is the system prompt of every request", show_default=False),
]
AsciiOnly = Annotated[
    bool | None,
    typer.Option("--ascii-only/--any-text", help="answers of ASCII tokens only", show_default=False),
]
EncoderTokenizer = Annotated[
    Path | None,
    typer.Option(
        help="the generator's text encoder's tokenizer (a folder or tokenizer.json, e.g. T5's): answers "
        "longer than --encoder-limit tokens are generated again shorter, or fail",
        show_default=False,
    ),
]
EncoderLimit = Annotated[
    int | None,
    typer.Option(
        min=1, help="tokens the encoder takes (default 512 with --encoder-tokenizer)", show_default=False
    ),
]


def _shared(name: str, annotation: object, default: object) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotation, default=default
    )


#: the options ``plan`` and ``upsample-prompts`` both take, each with its flag, help and default
SHARED = {
    option.name: option
    for option in (
        _shared("preprocess", Preprocess, True),
        _shared("max_resolution", MaxResolution, str(MAX_RESOLUTION)),
        _shared("num_frames", NumFrames, NUM_FRAMES),
        _shared("frame_sampling", FrameSampling, "first"),
        _shared("max_tokens", MaxTokens, MAX_TOKENS),
        _shared("max_model_len", MaxModelLen, MAX_MODEL_LEN),
        _shared("max_vision_tokens", MaxVisionTokens, None),
        _shared("model", Model, None),
        _shared("preset", Preset, None),
        _shared("system_prompt_file", SystemPromptFile, None),
        _shared("ascii_only", AsciiOnly, None),
        _shared("encoder_tokenizer", EncoderTokenizer, None),
        _shared("encoder_limit", EncoderLimit, None),
    )
}
#: what is sent of each video
SENT = ("preprocess", "max_resolution", "num_frames", "frame_sampling")
#: the refiner's preset and system prompt, and answers that fit the generator's encoder (issue 25)
REFINER = ("preset", "system_prompt_file", "ascii_only", "encoder_tokenizer", "encoder_limit")

Command = TypeVar("Command", bound=Callable[..., None])


def shared_options(**after: Sequence[str]) -> Callable[[Command], Command]:
    """Give a command the :data:`SHARED` options named, each list placed after the command's own
    parameter of that keyword (their order in ``--help``); the command takes them as ``**flags``.

    ``@shared_options(prompts_file=SENT)`` on ``def plan(ctx, prompts_file, **flags)`` makes
    ``plan PROMPTS_FILE --preprocess-videos ... --frame-sampling ...``."""

    def declare(command: Command) -> Command:
        own = inspect.signature(command, eval_str=True)
        unknown = set(after) - set(own.parameters)
        assert not unknown, f"{command.__name__} has no parameter {unknown} to place options after"
        parameters: list[inspect.Parameter] = []
        for parameter in own.parameters.values():
            if parameter.kind is not inspect.Parameter.VAR_KEYWORD:
                parameters.append(parameter)
                parameters += [SHARED[name] for name in after.get(parameter.name, ())]
        command.__signature__ = own.replace(parameters=parameters)  # type: ignore[attr-defined]
        return command

    return declare


#: parameters whose settings key differs from the parameter's name
_RENAMED = {
    "preprocess": "preprocess_videos",
    "engine_option": "engine_options",
    "offload": "offload_prompt_upsampler",
}
#: parameters that are not settings (what to run on, how to print)
_NOT_SETTINGS = frozenset(
    {"prompts_file", "output_file", "input_dir", "force", "quiet", "config", "as_json", "report", "remote"}
)


def given_settings(ctx: typer.Context, values: dict[str, Any]) -> dict[str, Any]:
    """The ``[upsample]`` settings the user gave as flags (defaults left out), by settings key."""
    flags: dict[str, Any] = {}
    for name, value in values.items():
        source = ctx.get_parameter_source(name)
        if name in _NOT_SETTINGS or source is None or source.name != "COMMANDLINE":
            continue
        flags[_RENAMED.get(name, name)] = _flag_value(name, value)
    return flags


def _flag_value(name: str, value: Any) -> Any:
    if name == "max_resolution":
        return parse_resolution(value)
    if name == "batch_size":
        return parse_batch_size(value)
    if name == "engine_option":
        return parse_engine_options(value or [])
    return value


def settings_from_flags(ctx: typer.Context, values: dict[str, Any], config: Path | None) -> ResolvedSettings:
    """Defaults < config file < environment < these flags."""
    return resolve_settings(flags={"upsample": given_settings(ctx, values)}, config_file=config)


def parse_batch_size(value: str) -> int | Literal["auto"]:
    if value == "auto":
        return "auto"
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"--batch-size {value!r} is not a positive number; pass e.g. 32, or 'auto'")
    return int(value)


def parse_engine_options(pairs: list[str]) -> dict[str, str | int | float | bool | None]:
    """``KEY=VALUE`` pairs; numbers and true/false are converted."""
    options: dict[str, str | int | float | bool | None] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(
                f"--engine-option {pair!r} is not KEY=VALUE; e.g. --engine-option max_num_seqs=64"
            )
        options[key] = _scalar(raw)
    return options


def _scalar(raw: str) -> str | int | float | bool:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw
