"""Settings, built once, in rising precedence: defaults < a preset's (``preset``) < a TOML file <
``COSMOS_*`` environment variables < command-line flags (or the orchestrator's keyword arguments).

The TOML file is ``--config PATH``, else ``$COSMOS_WORKFLOW_CONFIG``, else ``cosmos-workflow.toml``
in the working directory, if any. Its sections are the seed's ``config.toml`` names::

    [upsample]            # run options, named like the flags: max_tokens = 300, engine = "hf", ...
    [remote]              # host, port, user, ssh_key, known_hosts, host_key_policy, mode, python, gpus
    [paths]               # remote_dir
    [docker]              # image, checkpoint_dir

Without a ``model``, the upsampler is looked for where Cosmos-Transfer1's download script puts it:
``$COSMOS_CHECKPOINT_DIR/nvidia/Cosmos-UpsamplePrompt1-12B-Transfer`` first, then
``./checkpoints/nvidia/Cosmos-UpsamplePrompt1-12B-Transfer``
(:func:`cosmos_workflow.checkpoint.discovery.default_checkpoint`).

Environment variables: ``COSMOS_<KEY>`` for ``[upsample]`` keys (``COSMOS_MAX_TOKENS=200``) and
``COSMOS_<SECTION>_<KEY>`` for the others (``COSMOS_REMOTE_HOST=gpu1``). An unknown key in the
file is an error naming the key and the file; every value remembers where it came from
(``cosmos-workflow config`` prints them).

What each setting is (its type, default, bounds and description) is declared in
:mod:`cosmos_workflow.settings`; :func:`cosmos_workflow.options.run_options` turns the
``[upsample]`` settings into the one frozen :class:`~cosmos_workflow.options.RunOptions` a run
carries from start to end (both re-exported here, as before the splits).
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cosmos_workflow.checkpoint.discovery import CHECKPOINT_DIR_ENV
from cosmos_workflow.defaults import PRESETS
from cosmos_workflow.errors import ConfigError, UsageError
from cosmos_workflow.options import RunOptions as RunOptions
from cosmos_workflow.options import check_ray_engine as check_ray_engine
from cosmos_workflow.options import default_clips_dir as default_clips_dir
from cosmos_workflow.options import encoder_limit_of as encoder_limit_of
from cosmos_workflow.options import plan_settings as plan_settings
from cosmos_workflow.options import resolve_model as resolve_model
from cosmos_workflow.options import run_options as run_options
from cosmos_workflow.settings import SECTIONS as SECTIONS
from cosmos_workflow.settings import Executor as Executor
from cosmos_workflow.settings import OnError as OnError
from cosmos_workflow.settings import Section, Settings
from cosmos_workflow.settings import UpsampleSettings as UpsampleSettings
from cosmos_workflow.userfiles import MiB, UserFile, read_user_text, too_deep

log = logging.getLogger("cosmos_workflow")

CONFIG_FILE = "cosmos-workflow.toml"
CONFIG_ENV = "COSMOS_WORKFLOW_CONFIG"

#: the COSMOS_* variables that are not settings, and where they are read; any other that is not
#: a setting (env_name) is a typo, warned about (tests/unit/test_config.py keeps this list whole)
OTHER_VARIABLES = frozenset(
    {
        CONFIG_ENV,
        CHECKPOINT_DIR_ENV,
        "COSMOS_WORKFLOW_CACHE",  # engines/tiny.py: where built artefacts are cached
        "COSMOS_WORKFLOW_PIP",  # scripts/upsample_prompt.sh: what the container installs
        "COSMOS_WORKFLOW_TEST_CRASH_RANK_AFTER",  # executors/torchrun.py: tests only
        "COSMOS_OPENAI_API_KEY",  # engines/openai.py
        "COSMOS_OPENAI_BASE_URL",  # engines/openai.py
        "COSMOS_CI",  # .ci/run: tests fail instead of skipping
        "COSMOS_TEST_SSHD",  # .ci/run, tests/sshd.py
        "COSMOS_TEST_PROBE_DIR",  # tests/probe_engines.py
        "COSMOS_VLLM_SOURCE_CACHE",  # tests/unit/test_engine_vllm_contract.py
        "COSMOS_PYPI_SIMPLE",  # tests/unit/test_engine_vllm_contract.py
        "COSMOS_SSHD_USER",  # scripts/ci/*.sh
        "COSMOS_SSHD_DIR",  # scripts/ci/sshd.sh
        "COSMOS_DOCKER_WORK",  # scripts/ci/docker.sh
    }
)


Layer = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class ResolvedSettings:
    """The effective settings, where each value came from, and the file read (if any)."""

    settings: Settings
    sources: dict[str, str]
    config_file: Path | None = None

    def rows(self) -> list[tuple[str, object, str]]:
        """``(section.key, value, source)`` for every setting, in declaration order."""
        rows = []
        for section, model in SECTIONS.items():
            values = getattr(self.settings, section)
            for key in model.model_fields:
                name = f"{section}.{key}"
                rows.append((name, getattr(values, key), self.sources.get(name, "default")))
        return rows


def resolve_settings(
    *,
    flags: Layer | None = None,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ResolvedSettings:
    """Defaults < file < environment < ``flags`` (``{"upsample": {"max_tokens": 200}}``)."""
    env = os.environ if env is None else env
    _warn_unknown_variables(env)
    path = find_config_file(config_file, env, cwd or Path.cwd())
    layers: list[tuple[str, Layer]] = []
    if path is not None:
        layers.append((str(path), read_config_file(path)))
    layers.append(("env", _env_layer(env)))
    layers.append(
        ("flag", {s: {k: v for k, v in f.items() if v is not None} for s, f in (flags or {}).items()})
    )
    layers = _preset_layer(layers) + layers
    merged: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    sources: dict[str, str] = {}
    for origin, layer in layers:
        for section, values in layer.items():
            _check_keys(section, values, origin)
            for key, value in values.items():
                merged[section][key] = value
                sources[f"{section}.{key}"] = _describe_origin(origin, section, key)
    settings = _validate(merged, sources)
    _check_gpus(settings.upsample, sources)
    return ResolvedSettings(settings, sources, path)


def _preset_layer(layers: list[tuple[str, Layer]]) -> list[tuple[str, Layer]]:
    """The settings of the preset the highest layer names, as a layer below all of them (an
    unknown name gives none: validation refuses it, naming the known ones)."""
    named = [layer["upsample"]["preset"] for _, layer in layers if "preset" in layer.get("upsample", {})]
    preset = named[-1] if named else None
    if not isinstance(preset, str) or preset not in PRESETS:
        return []
    return [(f"preset {preset}", {"upsample": PRESETS[preset]})]


def find_config_file(given: Path | None, env: Mapping[str, str], cwd: Path) -> Path | None:
    """``--config``, else ``$COSMOS_WORKFLOW_CONFIG``, else ``./cosmos-workflow.toml`` if present."""
    if given is None and env.get(CONFIG_ENV):
        given = Path(env[CONFIG_ENV])
    if given is not None:
        return given  # read through the one door: missing, special or too large is one line there
    default = cwd / CONFIG_FILE
    return default if os.path.lexists(default) else None


#: the TOML settings file; small, and tomllib recurses once per level of nesting
CONFIG = UserFile(
    what="config file",
    max_bytes=MiB,
    error=ConfigError,
    fix="fix the file or pass another --config",
    missing=f"check --config or ${CONFIG_ENV}",
    syntax="toml",
)


def read_config_file(path: Path) -> dict[str, dict[str, Any]]:
    """The file's sections; a syntax error or an unknown section is one line naming the file."""
    try:
        data = tomllib.loads(read_user_text(path, CONFIG))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc}); fix the file or pass another --config") from exc
    for section, values in data.items():
        if section not in SECTIONS:
            raise ConfigError(
                f"{path}: unknown section [{section}]{_did_you_mean(section, SECTIONS)}; "
                f"known sections: {', '.join(f'[{s}]' for s in SECTIONS)}"
            )
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: {section} must be a [{section}] table of keys")
    return data


def _env_layer(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    layer: dict[str, dict[str, Any]] = {}
    for section, model in SECTIONS.items():
        for key in model.model_fields:
            name = env_name(section, key)
            if env.get(name, "") != "":
                layer.setdefault(section, {})[key] = _env_value(name, env[name], model, key)
    return layer


#: unknown variables already warned about (settings are resolved more than once in a process)
_warned: set[str] = set()


def _warn_unknown_variables(env: Mapping[str, str]) -> None:
    """A ``COSMOS_*`` variable that is neither a setting nor in :data:`OTHER_VARIABLES` is ignored,
    with a warning naming the closest setting (as an unknown TOML key is refused)."""
    settings = {env_name(section, key) for section, model in SECTIONS.items() for key in model.model_fields}
    for name in sorted(env):
        if not name.startswith("COSMOS_") or name in settings | OTHER_VARIABLES | _warned:
            continue
        _warned.add(name)
        log.warning(
            "unknown environment variable %s%s; it is ignored (cosmos-workflow config lists the settings)",
            name,
            _did_you_mean(name, sorted(settings), prefix="COSMOS_"),
        )


def env_name(section: str, key: str) -> str:
    """``COSMOS_MAX_TOKENS`` for ``[upsample] max_tokens``; ``COSMOS_REMOTE_HOST`` for the others."""
    prefix = "COSMOS_" if section == "upsample" else f"COSMOS_{section.upper()}_"
    return prefix + key.upper()


def _env_value(name: str, raw: str, model: type[Section], key: str) -> Any:
    if model.model_fields[key].annotation is dict or key == "engine_options":
        try:
            if too_deep(raw, "json"):  # json.loads would raise RecursionError
                raise ValueError("nested too deeply")
            return json.loads(raw)
        except ValueError:
            raise ConfigError(
                f"${name} must be a JSON object, e.g. {name}='{{\"max_num_seqs\": 64}}'"
            ) from None
    return raw


def _check_keys(section: str, values: Mapping[str, Any], origin: str) -> None:
    known = SECTIONS[section].model_fields
    for key in values:
        if key not in known:
            where = "the flags" if origin == "flag" else origin
            raise (UsageError if origin == "flag" else ConfigError)(
                f"{where}: unknown key {key!r} in [{section}]{_did_you_mean(key, known)}; "
                f"known keys: {', '.join(known)}"
            )


def _did_you_mean(word: str, choices: Iterable[str], *, prefix: str = "") -> str:
    """`` (did you mean 'max_tokens'?)`` for the closest choice, compared without ``prefix``."""
    stems = [choice.removeprefix(prefix) for choice in choices]
    close = difflib.get_close_matches(word.removeprefix(prefix), stems, n=1)
    return f" (did you mean {prefix + close[0]!r}?)" if close else ""


def _describe_origin(origin: str, section: str, key: str) -> str:
    if origin.startswith("preset "):
        return origin
    if origin == "env":
        return f"env {env_name(section, key)}"
    return origin if origin == "flag" else f"file {origin}"


def _validate(merged: dict[str, dict[str, Any]], sources: Mapping[str, str]) -> Settings:
    sections = {}
    for section, model in SECTIONS.items():
        try:
            sections[section] = model.model_validate(merged[section])
        except ValidationError as exc:
            message = _invalid(section, exc, merged[section], sources)
            raise (UsageError if "(flag)" in message else ConfigError)(message) from None
    return Settings.model_validate(sections)


def _check_gpus(upsample: UpsampleSettings, sources: Mapping[str, str]) -> None:
    """``num_gpu``, ``cuda_devices`` and ``device`` must agree (a flag among them: a usage error)."""
    problem = None
    devices = upsample.cuda_devices.split(",") if upsample.cuda_devices else []
    if devices and len(devices) < upsample.num_gpu:
        problem = (
            f"num_gpu is {upsample.num_gpu} but cuda_devices {upsample.cuda_devices!r} lists "
            f"{len(devices)} GPU(s); list one per process (e.g. --cuda-devices "
            f"{','.join(map(str, range(upsample.num_gpu)))}) or lower --num-gpu"
        )
    elif upsample.num_gpu > 1 and upsample.device and upsample.device.startswith("cuda"):
        problem = (
            f"device {upsample.device!r} pins one GPU but num_gpu is {upsample.num_gpu} (each process "
            "takes its own GPU); drop --device, and pick the GPUs with --cuda-devices"
        )
    if problem is None:
        return
    given = [sources.get(f"upsample.{key}", "default") for key in ("num_gpu", "cuda_devices", "device")]
    raise (UsageError if "flag" in given else ConfigError)(f"invalid setting: {problem}")


def _invalid(
    section: str, exc: ValidationError, values: Mapping[str, Any], sources: Mapping[str, str]
) -> str:
    problems = []
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else "?"
        origin = sources.get(f"{section}.{key}", "default")
        problems.append(f"[{section}] {key} = {values.get(key)!r} ({origin}): {error['msg']}")
    return "invalid setting: " + "; ".join(problems)


def options_from_keywords(
    *, output: Path | None = None, force: bool = False, config_file: Path | None = None, **keywords: Any
) -> RunOptions:
    """RunOptions from Python keyword arguments (the orchestrator's), with the same precedence as
    flags over the file and environment; ``checkpoint_dir`` is accepted for ``model``."""
    checkpoint_dir = keywords.pop("checkpoint_dir", None)
    if checkpoint_dir is not None:
        keywords["model"] = str(checkpoint_dir)
    resolved = resolve_settings(flags={"upsample": keywords}, config_file=config_file)
    return run_options(resolved.settings.upsample, output=output, force=force)
