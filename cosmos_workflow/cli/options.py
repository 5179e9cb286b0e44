"""The options that set an ``[upsample]`` setting, each declared once from the setting's
declaration in :mod:`cosmos_workflow.settings` (help, default, bounds), the options several
commands share, and how flags become settings.

Only flags given on the command line become settings (a flag left at its default does not
override the config file or the environment: see :mod:`cosmos_workflow.config`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from pydantic.fields import FieldInfo

from cosmos_workflow import media
from cosmos_workflow.config import ResolvedSettings, resolve_settings
from cosmos_workflow.errors import UsageError
from cosmos_workflow.settings import Executor, OnError, UpsampleSettings


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
    typer.Argument(help="JSON list (or .jsonl) of {name, prompt, video_path} items"),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML settings file (default: $COSMOS_WORKFLOW_CONFIG, else ./cosmos-workflow.toml if present)",
        show_default=False,
    ),
]


#: flags whose setting has another name (the flag reads as a switch, or is given once per option)
_RENAMED = {
    "preprocess": "preprocess_videos",
    "engine_option": "engine_options",
    "offload": "offload_prompt_upsampler",
}
#: the default that :func:`_option` takes from the setting
_FROM_SETTING: Any = object()


def setting_of(name: str) -> FieldInfo:
    """The ``[upsample]`` setting that flag parameter ``name`` sets."""
    return UpsampleSettings.model_fields[_RENAMED.get(name, name)]


def _option(
    name: str, kind: Any, *flags: str, more: str = "", default: Any = _FROM_SETTING
) -> inspect.Parameter:
    """The option that sets the ``[upsample]`` setting of parameter ``name``, parsed as ``kind``: its
    help is the setting's description, then ``more`` (what only the command line needs to say), its
    bounds and default the setting's (a default the CLI reads as text is shown as text)."""
    setting = setting_of(name)
    low, high = _bounds(setting)
    option = typer.Option(*flags, help=f"{setting.description}{more}", min=low, max=high)
    if default is _FROM_SETTING:
        default = str(setting.default) if kind is str and setting.default is not None else setting.default
    return inspect.Parameter(
        name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[kind, option], default=default
    )


def _bounds(setting: FieldInfo) -> tuple[float | None, float | None]:
    """The setting's bounds, as the option's ``min`` and ``max`` (``gt`` as ``min``: the setting
    then refuses the bound itself, with its own message)."""
    low = high = None
    for rule in setting.metadata:
        low = getattr(rule, "ge", getattr(rule, "gt", low))
        high = getattr(rule, "le", high)
    return low, high


#: every option that sets an ``[upsample]`` setting, each declared once; a command takes those it
#: names with :func:`shared_options`
OPTIONS = {
    option.name: option
    for option in (
        _option(
            "preprocess",
            bool,
            "--preprocess-videos/--no-preprocess",
            more="; --no-preprocess sends them as stock Cosmos does",
        ),
        _option("max_resolution", str),
        _option("num_frames", int),
        _option("frame_sampling", media.FrameSampling),
        _option("engine", str),
        _option("model", str | None, "--model", "--checkpoint-dir"),
        _option("batch_size", str),
        _option("first_batch", int),
        _option("max_model_len", int),
        _option("max_vision_tokens", int | None),
        _option("max_tokens", int),
        _option("preset", str | None),
        _option("system_prompt_file", Path | None),
        _option("ascii_only", bool | None, "--ascii-only/--any-text", default=None),
        _option("encoder_tokenizer", Path | None),
        _option("encoder_limit", int | None),
        _option("temperature", float),
        _option("top_p", float),
        _option("seed", int | None),
        _option("on_error", OnError),
        _option("clips", bool, "--clips/--no-clips"),
        _option("clips_dir", Path | None),
        _option("control", str | None),
        _option("device", str | None),
        _option("engine_option", list[str] | None, default=None, more=": KEY=VALUE, repeatable"),
        _option("offload", bool, "--offload/--keep-loaded", more="; one command is one batch"),
        _option("num_gpu", int),
        _option("cuda_devices", str | None),
        _option("executor", Executor),
        _option("ray_address", str | None),
        _option("ray_actors", int | None),
    )
}
#: what is sent of each video
SENT = ("preprocess", "max_resolution", "num_frames", "frame_sampling")
#: the model's context, and its share for the frames and the answer
TOKENS = ("max_model_len", "max_vision_tokens", "max_tokens")
#: the refiner's preset and system prompt, and answers that fit the generator's encoder (issue 25)
REFINER = ("preset", "system_prompt_file", "ascii_only", "encoder_tokenizer", "encoder_limit")
#: how the answer is sampled, and what a failed item writes
SAMPLING = ("temperature", "top_p", "seed", "on_error")
#: the run's clips, model and processes
RUN = (
    "clips",
    "clips_dir",
    "control",
    "device",
    "engine_option",
    "offload",
    "num_gpu",
    "cuda_devices",
    "executor",
    "ray_address",
    "ray_actors",
)
#: the options ``plan`` and ``upsample-prompts`` both take
SHARED = (*SENT, "max_tokens", "max_model_len", "max_vision_tokens", "model", *REFINER)

Command = TypeVar("Command", bound=Callable[..., None])


def shared_options(**after: Sequence[str]) -> Callable[[Command], Command]:
    """Give a command the :data:`OPTIONS` named, each list placed after the command's own
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
                parameters += [OPTIONS[name] for name in after.get(parameter.name, ())]
        command.__signature__ = own.replace(parameters=parameters)  # type: ignore[attr-defined]
        return command

    return declare


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
