"""Contract test: every vLLM name, argument and behaviour our engine relies on, in each checked release.

Three releases are checked (``engine.VLLM_VERSIONS_CHECKED``): the one in the Cosmos-Transfer1
image (NVIDIA's Triton 25.04 vLLM container ships vLLM 0.8.1), the one that ran on the H200
(0.26.0) and the newest release when this was written. vLLM cannot run here (no GPU; the wheel
is CUDA-only), so each release's sdist is read with ``ast``, without importing it: downloaded once
from PyPI into a cache, sha256 checked. Where releases define a thing differently (an enum in one,
a ``Literal`` in another; a flag returned by one method or a method overridden), each known form
is accepted, and at least one must be found. The names come from the engine modules' own
``*_USED`` constants, which the engine passes through a guard at run time, so this list cannot
drift from what the engine sends.

Skips only when PyPI cannot be reached at all outside CI; every other problem fails.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import tarfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from cosmos_workflow.engines import vllm as engine
from cosmos_workflow.engines import vllm_qwen
from cosmos_workflow.versions import release

PYPI_SIMPLE = os.environ.get("COSMOS_PYPI_SIMPLE", "https://pypi.org/simple")
CACHE = Path(os.environ.get("COSMOS_VLLM_SOURCE_CACHE", Path.home() / ".cache" / "cosmos-workflow" / "vllm"))
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
Node = TypeVar("Node", bound=ast.AST)
#: What is read from each sdist: files, or folders ending in "/".
WANTED = (
    "vllm/__init__.py",
    "vllm/inputs/",
    "vllm/entrypoints/llm.py",
    "vllm/engine/arg_utils.py",
    "vllm/sampling_params.py",
    "vllm/outputs.py",
    "vllm/config.py",
    "vllm/config/model.py",
    "vllm/transformers_utils/config.py",
    "vllm/model_executor/model_loader/__init__.py",
    "vllm/model_executor/models/pixtral.py",
    "vllm/model_executor/models/llava.py",
    "vllm/model_executor/models/qwen2_vl.py",
    "vllm/model_executor/models/qwen2_5_vl.py",
    "vllm/multimodal/processing.py",
    "vllm/multimodal/processing/",
    "vllm/multimodal/parse.py",
    "vllm/v1/engine/",
    "vllm/engine/llm_engine.py",
)


@dataclass
class Source:
    """The parsed files of one vLLM release, keyed by path inside the sdist (``vllm/...``)."""

    version: str
    trees: dict[str, ast.Module] = field(default_factory=dict)

    def tree(self, path: str) -> ast.Module:
        assert path in self.trees, f"{path} missing from vLLM {self.version}"
        return self.trees[path]

    def under(self, folder: str) -> list[ast.Module]:
        return [tree for path, tree in sorted(self.trees.items()) if path.startswith(folder)]

    def classes(self, folder: str, name: str) -> list[ast.ClassDef]:
        return [c for tree in self.under(folder) for c in _all(tree, ast.ClassDef) if c.name == name]


def _sdist_url(version: str) -> tuple[str, str]:
    headers = {"Accept": "application/vnd.pypi.simple.v1+json"}
    try:
        response = httpx.get(f"{PYPI_SIMPLE}/vllm/", headers=headers, timeout=30, follow_redirects=True)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        if os.environ.get("COSMOS_CI") == "1":
            raise
        pytest.skip(f"PyPI unreachable ({exc}): cannot fetch the vLLM {version} source")
    response.raise_for_status()
    for item in response.json()["files"]:
        if item["filename"] == f"vllm-{version}.tar.gz":
            return str(item["url"]), str(item["hashes"]["sha256"])
    raise AssertionError(f"vllm-{version}.tar.gz is not on PyPI: is {version} a real vLLM release?")


def _download(url: str, sha256: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.part")
    digest = hashlib.sha256()
    with httpx.stream("GET", url, timeout=300, follow_redirects=True) as response, partial.open("wb") as fh:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            digest.update(chunk)
            fh.write(chunk)
    assert digest.hexdigest() == sha256, f"{target.name} sha256 mismatch"
    os.replace(partial, target)


def _wanted(path: str) -> bool:
    return path.endswith(".py") and any(path == w or (w.endswith("/") and path.startswith(w)) for w in WANTED)


@pytest.fixture(scope="module", params=engine.VLLM_VERSIONS_CHECKED)
def source(request: pytest.FixtureRequest) -> Source:
    version: str = request.param
    archive = CACHE / f"vllm-{version}.tar.gz"
    if not archive.is_file():
        _download(*_sdist_url(version), archive)
    prefix = f"vllm-{version}/"
    parsed = Source(version)
    with tarfile.open(archive) as tar:
        for member in tar:
            path = member.name.removeprefix(prefix)
            handle = tar.extractfile(member) if member.isfile() and _wanted(path) else None
            if handle is not None:
                parsed.trees[path] = ast.parse(handle.read().decode())
    assert parsed.trees, f"nothing read from {archive}"
    return parsed


# --------------------------------------------------------------------------------------------
# AST helpers
# --------------------------------------------------------------------------------------------


def _all(tree: ast.AST, kind: type[Node]) -> Iterator[Node]:
    return (node for node in ast.walk(tree) if isinstance(node, kind))


def _class(tree: ast.Module, name: str) -> ast.ClassDef:
    found = [c for c in _all(tree, ast.ClassDef) if c.name == name]
    assert found, f"class {name} not found"
    return found[0]


def _method(cls: ast.ClassDef, name: str) -> ast.FunctionDef | None:
    found = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == name]
    return found[0] if found else None


def _params(func: ast.FunctionDef) -> set[str]:
    args = func.args
    return {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}


def _annotated_fields(cls: ast.ClassDef) -> dict[str, ast.expr]:
    return {
        n.target.id: n.annotation
        for n in cls.body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
    }


def _fields_with_bases(source: Source, folder: str, name: str) -> set[str]:
    """A class's annotated fields, with those of its bases defined in the same folder."""
    found = source.classes(folder, name)
    assert found, f"class {name} not found under {folder} in vLLM {source.version}"
    names = set(_annotated_fields(found[0]))
    for base in found[0].bases:
        if isinstance(base, ast.Name) and source.classes(folder, base.id):
            names |= _fields_with_bases(source, folder, base.id)
    return names


def _self_attributes(func: ast.FunctionDef) -> set[str]:
    return {
        t.attr
        for n in _all(func, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
    }


def _strings_in_definition(tree: ast.Module, name: str) -> set[str] | None:
    """String constants inside the class, function or assignment called ``name`` (None: no such thing)."""
    for node in ast.walk(tree):
        named = getattr(node, "name", None) == name
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            named = any(isinstance(t, ast.Name) and t.id == name for t in targets)
        if named:
            return {c.value for c in _all(node, ast.Constant) if isinstance(c.value, str)}
    return None


def _exported(tree: ast.Module) -> set[str]:
    """Names a package exports: ``__all__`` plus the keys of a lazy ``MODULE_ATTRS`` table."""
    names: set[str] = set()
    for node in _all(tree, ast.Assign):
        if any(isinstance(t, ast.Name) and t.id in ("__all__", "MODULE_ATTRS") for t in node.targets):
            container = node.value
            items = container.keys if isinstance(container, ast.Dict) else getattr(container, "elts", [])
            names |= {c.value for c in items if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    return names


def _calls(func: ast.FunctionDef) -> set[str]:
    return {c.func.attr for c in _all(func, ast.Call) if isinstance(c.func, ast.Attribute)}


# --------------------------------------------------------------------------------------------
# Names and arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_imported_names_exist(source: Source) -> None:
    for module, name in engine.IMPORTS_USED:
        package = module.replace(".", "/") + "/__init__.py"
        if package in source.trees:
            names = _exported(source.tree(package))
        else:  # a plain module: the names it defines at top level
            names = {
                c.name
                for c in source.tree(module.replace(".", "/") + ".py").body
                if isinstance(c, ast.ClassDef)
            }
        assert name in names, f"{module}.{name} is not exported by vLLM {source.version}"


@pytest.mark.slow
def test_llm_engine_methods_exist(source: Source) -> None:
    """Streaming feeds ``LLM.llm_engine`` directly: every engine class a release may give ``LLM``
    (the V0 and the V1 ``LLMEngine``) has the methods it calls."""
    engines = [
        c
        for path in ("vllm/engine/llm_engine.py", "vllm/v1/engine/llm_engine.py")
        if path in source.trees
        for c in _all(source.tree(path), ast.ClassDef)
        if c.name == "LLMEngine"
    ]
    assert engines, f"no LLMEngine class in vLLM {source.version}"
    for cls in engines:
        methods = {f.name for f in cls.body if isinstance(f, ast.FunctionDef)}
        assert methods >= engine.LLM_ENGINE_METHODS_USED, (
            source.version,
            engine.LLM_ENGINE_METHODS_USED - methods,
        )


@pytest.mark.slow
def test_llm_keyword_arguments_exist(source: Source) -> None:
    init = _method(_class(source.tree("vllm/entrypoints/llm.py"), "LLM"), "__init__")
    assert init is not None and init.args.kwarg is not None, "LLM(**kwargs) forwards to EngineArgs"
    engine_args = _annotated_fields(_class(source.tree("vllm/engine/arg_utils.py"), "EngineArgs"))
    accepted = _params(init) | set(engine_args)
    assert accepted >= engine.LLM_KWARGS_USED, (source.version, sorted(engine.LLM_KWARGS_USED - accepted))


@pytest.mark.slow
def test_limit_mm_per_prompt_takes_a_count_per_modality(source: Source) -> None:
    """The engine passes {"image": N}: the field must be a mapping of modality name to int."""
    engine_args = _annotated_fields(_class(source.tree("vllm/engine/arg_utils.py"), "EngineArgs"))
    annotation = ast.unparse(engine_args["limit_mm_per_prompt"])
    assert re.search(r"(Mapping|dict)\[str, int\b", annotation), (source.version, annotation)


@pytest.mark.slow
def test_generate_keyword_arguments_exist(source: Source) -> None:
    generate = _method(_class(source.tree("vllm/entrypoints/llm.py"), "LLM"), "generate")
    assert generate is not None
    assert _params(generate) >= engine.GENERATE_KWARGS_USED | {"prompts"}, source.version


@pytest.mark.slow
def test_sampling_fields_exist(source: Source) -> None:
    sampling = set(_annotated_fields(_class(source.tree("vllm/sampling_params.py"), "SamplingParams")))
    assert sampling >= engine.SAMPLING_FIELDS_USED, (
        source.version,
        sorted(engine.SAMPLING_FIELDS_USED - sampling),
    )


@pytest.mark.slow
def test_tokens_prompt_takes_token_ids_and_images(source: Source) -> None:
    keys = _fields_with_bases(source, "vllm/inputs/", "TokensPrompt")
    assert keys >= engine.PROMPT_KEYS_USED, (source.version, sorted(engine.PROMPT_KEYS_USED - keys))


@pytest.mark.slow
def test_output_attributes_exist(source: Source) -> None:
    outputs = source.tree("vllm/outputs.py")
    init = _method(_class(outputs, "RequestOutput"), "__init__")
    assert init is not None and _self_attributes(init) >= engine.REQUEST_OUTPUT_ATTRS_USED
    completion = set(_annotated_fields(_class(outputs, "CompletionOutput")))
    assert completion >= engine.COMPLETION_OUTPUT_ATTRS_USED, source.version


# --------------------------------------------------------------------------------------------
# Behaviours: the Mistral format, pre-expanded image tokens, how a bad request fails
# --------------------------------------------------------------------------------------------

#: Where each release defines the accepted values: (file, name of the class, function or alias).
ACCEPTED_VALUES = {
    "tokenizer_mode": [
        ("vllm/config/model.py", "TokenizerMode"),
        ("vllm/config.py", "_verify_tokenizer_mode"),
    ],
    "config_format": [("vllm/transformers_utils/config.py", "ConfigFormat")],
    "load_format": [
        ("vllm/model_executor/model_loader/__init__.py", "_LOAD_FORMAT_TO_MODEL_LOADER"),
        ("vllm/config.py", "LoadFormat"),
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("setting", sorted(ACCEPTED_VALUES))
def test_mistral_format_is_accepted(source: Source, setting: str) -> None:
    found = [
        strings
        for path, name in ACCEPTED_VALUES[setting]
        if path in source.trees and (strings := _strings_in_definition(source.tree(path), name)) is not None
    ]
    assert found, f"no definition of the accepted {setting} values found in vLLM {source.version}"
    assert all(engine.MISTRAL_MODE in strings for strings in found), (source.version, setting)


@pytest.mark.slow
def test_pixtral_takes_pre_expanded_image_tokens(source: Source) -> None:
    """Mistral-format Pixtral keeps the prompt's own [IMG]/[IMG_BREAK]/[IMG_END] run, so the ids we
    counted go in as they are. Older releases report the prompt updates as already applied (a True
    flag from ``_cached_apply_hf_processor``); newer ones override ``_maybe_apply_prompt_updates`` to
    find the placeholders without applying anything."""
    processor = _class(source.tree("vllm/model_executor/models/pixtral.py"), "PixtralMultiModalProcessor")
    cached = _method(processor, "_cached_apply_hf_processor")
    maybe = _method(processor, "_maybe_apply_prompt_updates")
    forms = []
    if cached is not None:
        returns = [n.value for n in _all(cached, ast.Return)]
        flags = [r.elts[-1] for r in returns if isinstance(r, ast.Tuple)]
        forms.append(bool(flags) and all(isinstance(f, ast.Constant) and f.value is True for f in flags))
    if maybe is not None:
        calls = _calls(maybe)
        forms.append("_find_mm_placeholders" in calls and "_apply_prompt_updates" not in calls)
    assert forms and all(forms), f"vLLM {source.version}: Pixtral would expand image tokens again"


@pytest.mark.slow
def test_hf_pixtral_expands_each_image_placeholder_into_rows(source: Source) -> None:
    """For Hugging Face-format checkpoints the engine sends one [IMG] per image: vLLM must expand it
    to the rows of [IMG] ending in [IMG_BREAK], the last in [IMG_END], as mistral-common does."""
    processor = _class(source.tree("vllm/model_executor/models/llava.py"), "PixtralHFMultiModalProcessor")
    updates = _method(processor, "_get_prompt_updates")
    assert updates is not None, source.version
    names = {n.id for n in _all(updates, ast.Name)}
    assert {"image_token_id", "image_break_id", "image_end_id", "ncols", "nrows"} <= names, source.version


@pytest.mark.slow
def test_a_too_long_prompt_fails_with_the_message_the_engine_recognises(source: Source) -> None:
    """The engine classifies a rejected request as a context-length failure by vLLM's message."""
    texts = {
        "".join(c.value for c in s.values if isinstance(c, ast.Constant) and isinstance(c.value, str))
        for tree in source.under("vllm/v1/engine/")
        for s in _all(tree, ast.JoinedStr)
    }
    assert any("longer than the maximum model length" in text for text in texts), source.version
    assert any("maximum model length" in text for text in texts)


# --------------------------------------------------------------------------------------------
# Qwen2.5-VL: one pad per visual, expanded by vLLM with the family's arithmetic
# --------------------------------------------------------------------------------------------

QWEN_FILES = ("vllm/model_executor/models/qwen2_5_vl.py", "vllm/model_executor/models/qwen2_vl.py")
QWEN_PROCESSORS = ("Qwen2_5_VLMultiModalProcessor", "Qwen2VLMultiModalProcessor")
#: the base processor's methods that decide whether a token prompt's pads are expanded
PROMPT_UPDATE_METHODS = frozenset(
    {
        "apply",
        "_cached_apply_hf_processor",
        "_apply_hf_processor_main",
        "_apply_hf_processor_tokens_only",
        "_maybe_apply_prompt_updates",
        "_postprocess_prompt",
    }
)


def _qwen_method(source: Source, name: str) -> ast.FunctionDef:
    """``name`` as Qwen2.5-VL's processor has it: its own, else inherited from Qwen2-VL's."""
    for path, cls_name in zip(QWEN_FILES, QWEN_PROCESSORS, strict=True):
        method = _method(_class(source.tree(path), cls_name), name)
        if method is not None:
            return method
    raise AssertionError(f"vLLM {source.version}: no {name} on the Qwen2.5-VL processor")


def _base_processor(source: Source) -> ast.ClassDef:
    found = source.classes("vllm/multimodal/processing", "BaseMultiModalProcessor")
    assert found, f"BaseMultiModalProcessor not found in vLLM {source.version}"
    return found[0]


@pytest.mark.slow
def test_qwen_expands_one_pad_per_visual_to_the_grids_merged_patches(source: Source) -> None:
    """Each image or video item is ONE pad replaced by grid_thw.prod() // merge_size**2 pads: the
    family's count, so the engine sends each visual's run collapsed to one pad."""
    updates = _qwen_method(source, "_get_prompt_updates")
    replacements = [c for c in _all(updates, ast.Call) if getattr(c.func, "id", None) == "PromptReplacement"]
    assert replacements, source.version
    targets = {ast.unparse(k.value) for c in replacements for k in c.keywords if k.arg == "target"}
    assert targets == {"[placeholder[modality]]"}, (source.version, targets)
    body = ast.unparse(updates)
    assert "grid_thw" in body and ".prod()" in body and "merge_size ** 2" in body, source.version
    modalities = {c.value for c in _all(updates, ast.Constant) if isinstance(c.value, str)}
    assert modalities >= vllm_qwen.MODALITIES_USED, source.version


@pytest.mark.slow
def test_a_token_prompts_pads_are_expanded_by_vllm_not_taken_as_expanded(source: Source) -> None:
    """A token prompt is never reported as already updated: older releases return a False flag
    from the token branch of ``_apply_hf_processor_main``; newer ones always apply the updates in
    ``_maybe_apply_prompt_updates``. Neither Qwen processor overrides that path."""
    for path, name in zip(QWEN_FILES, QWEN_PROCESSORS, strict=True):
        methods = {f.name for f in _class(source.tree(path), name).body if isinstance(f, ast.FunctionDef)}
        assert not methods & PROMPT_UPDATE_METHODS, (source.version, name, methods & PROMPT_UPDATE_METHODS)
    base = _base_processor(source)
    if "is_update_applied" in ast.unparse(base):
        main = _method(base, "_apply_hf_processor_main")
        assert main is not None, source.version
        last = [n for n in main.body if isinstance(n, ast.Return)][-1].value
        assert isinstance(last, ast.Tuple) and ast.unparse(last.elts[-1]) == "False", source.version
    else:
        maybe = _method(base, "_maybe_apply_prompt_updates")
        assert maybe is not None and "_apply_prompt_updates" in _calls(maybe), source.version


@pytest.mark.slow
def test_qwen_takes_a_video_as_the_engine_sends_it(source: Source) -> None:
    """Where the data parser takes ``(frames, metadata)`` (the engine probes for
    ``_get_video_with_metadata``), a tuple is unpacked and the metadata keys are those vLLM's own
    Qwen2.5-VL dummy videos carry; where it does not, Qwen2.5-VL must not require metadata."""
    parser = _class(source.tree("vllm/multimodal/parse.py"), "MultiModalDataParser")
    unpack = _method(parser, "_get_video_with_metadata")
    qwen = ast.unparse(source.tree(QWEN_FILES[0]))
    if unpack is None:
        assert "video_needs_metadata" not in qwen, source.version
        return
    assert "isinstance(video, tuple)" in ast.unparse(unpack), source.version
    parse = _method(parser, "_parse_video_data")
    assert parse is not None and "isinstance(data, tuple)" in ast.unparse(parse), source.version
    if "video_needs_metadata=True" in qwen:
        dummy = _strings_in_definition(source.tree(QWEN_FILES[0]), "Qwen2_5_VLDummyInputsBuilder") or set()
        assert dummy >= vllm_qwen.VIDEO_METADATA_KEYS_USED, (
            source.version,
            sorted(vllm_qwen.VIDEO_METADATA_KEYS_USED - dummy),
        )


@pytest.mark.slow
def test_qwen_reads_the_pixel_limits_the_engine_passes(source: Source) -> None:
    """``mm_processor_kwargs={"size": {"shortest_edge": ..., "longest_edge": ...}}`` reaches the
    processor: a ``size`` parameter (older releases) or override (newer) in Qwen2-VL's module."""
    tree = source.tree(QWEN_FILES[1])
    strings = {c.value for c in _all(tree, ast.Constant) if isinstance(c.value, str)}
    assert strings >= vllm_qwen.SIZE_KEYS_USED, source.version
    info = _class(tree, "Qwen2VLProcessingInfo")
    parameters = {p for f in info.body if isinstance(f, ast.FunctionDef) for p in _params(f)}
    assert parameters | strings >= vllm_qwen.MM_PROCESSOR_KWARGS_USED, source.version
    limits = _method(info, "get_supported_mm_limits")
    assert limits is not None, source.version
    returned = {c.value for c in _all(limits, ast.Constant) if isinstance(c.value, str)}
    assert returned >= vllm_qwen.MODALITIES_USED, source.version


def test_pyproject_vllm_range_spans_the_checked_releases() -> None:
    (spec,) = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]["vllm"]
    lower = re.search(r">=\s*([\d.]+)", spec)
    upper = re.search(r"<\s*([\d.]+)", spec)
    assert lower and upper, f"pyproject's vllm extra {spec!r} should be a range"
    assert release(lower.group(1)) == release(engine.IMAGE_VLLM), spec
    assert release(engine.NEWEST_VLLM) < release(upper.group(1)), spec
