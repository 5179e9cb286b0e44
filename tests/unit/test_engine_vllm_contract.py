"""Contract test: every vLLM name our engine uses exists in the pinned vLLM release's source.

vLLM cannot run here (no GPU; the wheel is CUDA-only), so this reads the release's sdist (~17 MB,
downloaded once from PyPI into a cache, sha256 checked) with ``ast``, without importing it. The
names checked come from the engine module's own ``*_USED`` constants, which the engine passes
through a guard at run time, so this list cannot drift from what the engine sends.

Skips only when PyPI cannot be reached at all; every other problem fails.
"""

from __future__ import annotations

import ast
import hashlib
import os
import tarfile
from pathlib import Path

import httpx
import pytest

from cosmos_workflow.engines import vllm as engine

PYPI_SIMPLE = os.environ.get("COSMOS_PYPI_SIMPLE", "https://pypi.org/simple")
CACHE = Path(os.environ.get("COSMOS_VLLM_SOURCE_CACHE", Path.home() / ".cache" / "cosmos-workflow" / "vllm"))
SDIST = f"vllm-{engine.VLLM_VERSION}.tar.gz"
WANTED = (
    "vllm/__init__.py",
    "vllm/inputs/__init__.py",
    "vllm/inputs/data.py",
    "vllm/entrypoints/llm.py",
    "vllm/engine/arg_utils.py",
    "vllm/sampling_params.py",
    "vllm/outputs.py",
    "vllm/config/model.py",
    "vllm/transformers_utils/config.py",
    "vllm/model_executor/model_loader/__init__.py",
    "vllm/model_executor/models/pixtral.py",
)


def _sdist_url() -> tuple[str, str]:
    headers = {"Accept": "application/vnd.pypi.simple.v1+json"}
    try:
        response = httpx.get(f"{PYPI_SIMPLE}/vllm/", headers=headers, timeout=30, follow_redirects=True)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        pytest.skip(f"PyPI unreachable ({exc}): cannot fetch the vLLM {engine.VLLM_VERSION} source")
    response.raise_for_status()
    for item in response.json()["files"]:
        if item["filename"] == SDIST:
            return str(item["url"]), str(item["hashes"]["sha256"])
    raise AssertionError(f"{SDIST} is not on PyPI: is VLLM_VERSION {engine.VLLM_VERSION} a real release?")


def _download(url: str, sha256: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    digest = hashlib.sha256()
    with httpx.stream("GET", url, timeout=120, follow_redirects=True) as response, partial.open("wb") as fh:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            digest.update(chunk)
            fh.write(chunk)
    assert digest.hexdigest() == sha256, f"{SDIST} sha256 mismatch"
    os.replace(partial, target)


@pytest.fixture(scope="module")
def source() -> dict[str, ast.Module]:
    """The parsed files of the pinned vLLM release, keyed by path inside the package."""
    archive = CACHE / SDIST
    if not archive.is_file():
        _download(*_sdist_url(), archive)
    prefix = f"vllm-{engine.VLLM_VERSION}/"
    trees: dict[str, ast.Module] = {}
    with tarfile.open(archive) as tar:
        for name in WANTED:
            member = tar.extractfile(prefix + name)
            assert member is not None, f"{name} missing from {SDIST}"
            trees[name] = ast.parse(member.read().decode())
    return trees


def _class(tree: ast.Module, name: str) -> ast.ClassDef:
    found = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == name]
    assert found, f"class {name} not found"
    return found[0]


def _method(cls: ast.ClassDef, name: str) -> ast.FunctionDef:
    found = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == name]
    assert found, f"{cls.name}.{name} not found"
    return found[0]


def _params(func: ast.FunctionDef) -> set[str]:
    args = func.args
    return {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}


def _annotated_fields(cls: ast.ClassDef) -> set[str]:
    return {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}


def _self_attributes(func: ast.FunctionDef) -> set[str]:
    return {
        t.attr
        for n in ast.walk(func)
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
    }


def _literal_values(tree: ast.Module, alias: str) -> set[str]:
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        value = getattr(node, "value", None)
        named = any(isinstance(t, ast.Name) and t.id == alias for t in targets)
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and value is not None and named:
            return {
                c.value for c in ast.walk(value) if isinstance(c, ast.Constant) and isinstance(c.value, str)
            }
    raise AssertionError(f"{alias} not found")


def _exported(tree: ast.Module) -> set[str]:
    """Names a package exports: ``__all__`` plus the keys of a lazy ``MODULE_ATTRS`` table."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id in ("__all__", "MODULE_ATTRS") for t in node.targets
        ):
            container = node.value
            items = container.keys if isinstance(container, ast.Dict) else getattr(container, "elts", [])
            names |= {c.value for c in items if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    return names


@pytest.mark.slow
def test_imported_names_exist(source: dict[str, ast.Module]) -> None:
    for module, name in engine.IMPORTS_USED:
        path = module.replace(".", "/") + "/__init__.py"
        assert name in _exported(source[path]), (
            f"{module}.{name} is not exported by vLLM {engine.VLLM_VERSION}"
        )


@pytest.mark.slow
def test_llm_keyword_arguments_exist(source: dict[str, ast.Module]) -> None:
    llm = _class(source["vllm/entrypoints/llm.py"], "LLM")
    accepted = _params(_method(llm, "__init__")) | _annotated_fields(
        _class(source["vllm/engine/arg_utils.py"], "EngineArgs")
    )
    assert accepted >= engine.LLM_KWARGS_USED, sorted(engine.LLM_KWARGS_USED - accepted)


@pytest.mark.slow
def test_generate_keyword_arguments_exist(source: dict[str, ast.Module]) -> None:
    generate = _method(_class(source["vllm/entrypoints/llm.py"], "LLM"), "generate")
    assert _params(generate) >= engine.GENERATE_KWARGS_USED
    assert "prompts" in _params(generate)


@pytest.mark.slow
def test_sampling_fields_and_prompt_keys_exist(source: dict[str, ast.Module]) -> None:
    sampling = _annotated_fields(_class(source["vllm/sampling_params.py"], "SamplingParams"))
    assert sampling >= engine.SAMPLING_FIELDS_USED, sorted(engine.SAMPLING_FIELDS_USED - sampling)
    prompt = _annotated_fields(_class(source["vllm/inputs/data.py"], "TokensPrompt"))
    assert prompt >= engine.PROMPT_KEYS_USED, sorted(engine.PROMPT_KEYS_USED - prompt)


@pytest.mark.slow
def test_output_attributes_exist(source: dict[str, ast.Module]) -> None:
    outputs = source["vllm/outputs.py"]
    request = _self_attributes(_method(_class(outputs, "RequestOutput"), "__init__"))
    assert request >= engine.REQUEST_OUTPUT_ATTRS_USED
    completion = _annotated_fields(_class(outputs, "CompletionOutput"))
    assert completion >= engine.COMPLETION_OUTPUT_ATTRS_USED


@pytest.mark.slow
def test_mistral_format_is_accepted(source: dict[str, ast.Module]) -> None:
    assert engine.MISTRAL_MODE in _literal_values(source["vllm/config/model.py"], "TokenizerMode")
    assert engine.MISTRAL_MODE in _literal_values(source["vllm/transformers_utils/config.py"], "ConfigFormat")
    loaders = source["vllm/model_executor/model_loader/__init__.py"]
    assert engine.MISTRAL_MODE in _literal_values(loaders, "_LOAD_FORMAT_TO_MODEL_LOADER")


@pytest.mark.slow
def test_pixtral_takes_pre_expanded_image_tokens(source: dict[str, ast.Module]) -> None:
    """Pixtral's processor reports prompt updates as already applied, so our expanded ids go in as-is."""
    processor = _class(source["vllm/model_executor/models/pixtral.py"], "PixtralMultiModalProcessor")
    method = _method(processor, "_cached_apply_hf_processor")
    returns = [n.value for n in ast.walk(method) if isinstance(n, ast.Return)]
    assert returns and all(isinstance(r, ast.Tuple) for r in returns)
    flags = [r.elts[-1] for r in returns if isinstance(r, ast.Tuple)]
    assert all(isinstance(f, ast.Constant) and f.value is True for f in flags)


def test_pinned_version_matches_pyproject() -> None:
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    assert f'"vllm=={engine.VLLM_VERSION}"' in pyproject.read_text(), (
        f"pyproject's vllm extra must pin vllm=={engine.VLLM_VERSION}, the version checked here"
    )
