"""One function chooses what runs a batch from the options, and says why a combination is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from cosmos_workflow.config import RunOptions, resolve_settings
from cosmos_workflow.engines import EngineConfig
from cosmos_workflow.errors import UsageError
from cosmos_workflow.executors import LocalExecutor
from cosmos_workflow.executors.choice import choose
from cosmos_workflow.executors.launcher import TorchrunLauncher
from cosmos_workflow.executors.ray import RayExecutor
from cosmos_workflow.executors.remote import RemoteConfig, RemoteExecutor, remote_config
from cosmos_workflow.executors.torchrun import TorchrunExecutor
from cosmos_workflow.settings import EXECUTORS, UpsampleSettings


def options(engine: str = "fake", **update: object) -> RunOptions:
    return RunOptions(engine=EngineConfig(engine=engine, model="fake")).model_copy(update=update)


@pytest.fixture
def single(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process was not started by torchrun."""
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def rank(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process is rank 1 of 2 of a torchrun job."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")


@pytest.fixture
def host(tmp_path: Path) -> RemoteConfig:
    flags = {"remote": {"host": "gpu1", "user": "cosmos"}, "paths": {"remote_dir": "/work"}}
    return remote_config(resolve_settings(flags=flags, env={}, cwd=tmp_path))


@pytest.mark.usefixtures("single")
def test_a_single_process_runs_here_on_ray_or_through_torchrun() -> None:
    assert type(choose(options())) is LocalExecutor
    assert type(choose(options(executor="ray"))) is RayExecutor
    launcher = choose(options(num_gpu=2))
    assert isinstance(launcher, TorchrunLauncher)
    assert (launcher.num_gpu, launcher.journal_suffix, launcher.primary) == (2, "", True)


@pytest.mark.usefixtures("rank")
def test_a_torchrun_rank_runs_its_shard_unless_told_not_to() -> None:
    chosen = choose(options(num_gpu=2))
    assert isinstance(chosen, TorchrunExecutor)
    assert (chosen.journal_suffix, chosen.primary) == (".rank1", False)
    assert type(choose(options(), shard=False)) is LocalExecutor


@pytest.mark.usefixtures("single")
def test_a_named_executor_is_its_registry_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """An executor is chosen by its one line in settings.EXECUTORS: no branch of its own here; it
    runs in torchrun's stead, so --num-gpu is refused with it."""
    monkeypatch.setitem(EXECUTORS, "here", ("this process", "cosmos_workflow.executors.local:LocalExecutor"))
    assert type(choose(options(executor="here"))) is LocalExecutor
    with pytest.raises(UsageError) as refused:
        choose(options(executor="here", num_gpu=2))
    assert str(refused.value) == (
        "--num-gpu 2 starts torchrun, whose ranks run the local executor; drop --num-gpu or --executor here"
    )


def test_an_unknown_executor_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValidationError, match="'foo' is not an executor; choose local") as refused:
        UpsampleSettings(executor="foo")
    assert all(f" {name}" in str(refused.value) for name in EXECUTORS)


@pytest.mark.usefixtures("rank")
def test_ray_is_refused_under_torchrun() -> None:
    with pytest.raises(UsageError) as refused:
        choose(options(executor="ray"))
    assert str(refused.value) == "--executor ray runs once, not under torchrun: start it with plain python"


@pytest.mark.usefixtures("single")
def test_more_processes_than_devices_are_refused() -> None:
    cores = len(os.sched_getaffinity(0))
    with pytest.raises(UsageError) as refused:
        choose(options(num_gpu=cores + 1))
    assert str(refused.value) == (
        f"num_gpu {cores + 1} starts one process per device, and there are {cores} CPU cores this "
        f"process may use (the fake engine uses no GPU); pass --num-gpu {cores} or fewer"
    )


@pytest.mark.usefixtures("single")
def test_the_remote_host_takes_the_whole_batch_but_not_ray(host: RemoteConfig) -> None:
    chosen = choose(options(num_gpu=2), remote=host)
    assert isinstance(chosen, RemoteExecutor)
    assert chosen.config == host
    with pytest.raises(UsageError) as refused:
        choose(options(executor="ray"), remote=host)
    assert (
        str(refused.value) == "--remote runs the batch on the [remote] host; drop --executor ray (or use one)"
    )


@pytest.mark.usefixtures("single")
def test_the_remote_host_gets_an_encoder_tokenizer_as_one_tokenizer_json(
    host: RemoteConfig, tmp_path: Path
) -> None:
    """--remote sends the host the encoder's tokenizer.json (the file, or the folder's); a folder
    without one (counted through transformers here) cannot go as one file."""
    folder = tmp_path / "t5"
    folder.mkdir()
    (folder / "spiece.model").write_bytes(b"sentencepiece")
    with pytest.raises(UsageError) as refused:
        choose(options(encoder_tokenizer=folder, encoder_limit=512), remote=host)
    assert str(refused.value).startswith(f"--encoder-tokenizer {folder} is a folder without tokenizer.json")
    (folder / "tokenizer.json").write_text("{}")
    for given in (folder, folder / "tokenizer.json"):
        chosen = choose(options(encoder_tokenizer=given, encoder_limit=512), remote=host)
        assert isinstance(chosen, RemoteExecutor)
