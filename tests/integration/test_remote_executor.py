"""The remote executor in process, against the loopback sshd: a connection cut mid-run, the seed's
orchestrator running remotely because the config says so, a host that plans differently."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cosmos_workflow import api
from cosmos_workflow.config import UpsampleSettings, run_options
from cosmos_workflow.executors.remote import (
    Connection,
    PlanMismatchError,
    RemoteConfig,
    RemoteDir,
    RemoteExecutor,
)
from cosmos_workflow.specs.batch import BatchItem, load_batch
from cosmos_workflow.specs.prompt_spec import new_spec
from cosmos_workflow.workflow import WorkflowOrchestrator
from tests.sshd import Sshd, drop


def _job_log(config: RemoteConfig, sshd: Sshd) -> str:
    jobs = Path(sshd.home) / config.remote_dir.removeprefix("~/") / "jobs"
    [job] = list(jobs.iterdir())
    return (job / "job.log").read_text()


def test_connection_cut_mid_run_reconnects_and_reattaches(
    remote_config: RemoteConfig, remote_python: str, tmp_path: Path, sshd: Sshd
) -> None:
    config = remote_config.model_copy(
        update={"remote": remote_config.remote.model_copy(update={"python": remote_python})}
    )
    items = [BatchItem(name=f"item{n}", prompt=f"a boat, take {n}") for n in range(5)]
    output = tmp_path / "up.json"
    settings = UpsampleSettings(
        engine="fake", model="fake", batch_size=1, engine_options={"seconds_per_batch": 1.0}
    )
    executor = RemoteExecutor(config)
    transports: list[object] = []

    def progress(count: int, total: int | None = None) -> None:
        if total is not None:
            return
        transports.append(executor.connection.client.get_transport())
        if len(transports) == 1:
            drop(executor.connection)  # the network fails after the first result

    result = api.upsample(
        items, run_options(settings, output=output), output=output, executor=executor, progress=progress
    )
    assert [r.name for r in result.records] == [i.name for i in items]
    assert all(r.status == "text_only" for r in result.records)
    assert len(set(map(id, transports))) > 1  # later results came over a new connection
    log = _job_log(config, sshd)
    assert log.count("5 items (0 already done)") == 1  # one job on the host, never restarted


def test_orchestrator_runs_on_the_host_when_the_config_names_one(
    remote_config: RemoteConfig, remote_python: str, tmp_path: Path, sshd: Sshd, small_video: Path
) -> None:
    toml = tmp_path / "cosmos-workflow.toml"
    toml.write_text(
        f"""[remote]
host = "{sshd.host}"
port = {sshd.port}
user = "{sshd.user}"
ssh_key = "{sshd.client_key}"
known_hosts = "{remote_config.remote.known_hosts}"
mode = "venv"
python = "{remote_python}"

[paths]
remote_dir = "{remote_config.remote_dir}"
"""
    )
    specs = [
        new_spec("shot one", "a boat on a lake", input_video_path=str(small_video)),
        new_spec("shot two", "a quiet street at night"),
    ]
    orchestrator = WorkflowOrchestrator(work_dir=tmp_path / "work", config_file=toml)
    assert orchestrator.remote is not None and orchestrator.remote.remote.host == sshd.host
    done = orchestrator.upsample_prompts_batch(
        specs, preprocess_videos=True, max_resolution=480, engine="fake", model="fake"
    )
    assert orchestrator.failures == {}
    assert [spec.id for spec in done] == [spec.id for spec in specs]
    assert all(spec.upsampled_prompt and spec.upsampling_params for spec in done)
    assert done[0].upsampling_params is not None and done[0].upsampling_params.video_path == str(small_video)
    assert "2 items (0 already done)" in _job_log(remote_config, sshd)
    local = WorkflowOrchestrator(work_dir=tmp_path / "local", config_file=toml, remote=False)
    assert local.remote is None and local.executor is None  # the local default


@pytest.mark.slow
def test_a_host_that_plans_differently_is_stopped(
    remote_config: RemoteConfig, remote_python: str, tiny_model: Path, tmp_path: Path, examples: Path
) -> None:
    """The host's checkpoint caps images at 256 px where this machine's tokenizer allows 1024."""
    with Connection(remote_config.remote) as connection:
        folder = RemoteDir(connection, remote_config.remote_dir)
        for path in sorted(tiny_model.iterdir()):
            if path.name != "tekken.json":
                folder.upload_as(path, f"ckpt/{path.name}")
        tekken = json.loads((tiny_model / "tekken.json").read_text())
        tekken["image"]["max_image_size"] = 256
        folder.write_bytes("ckpt/tekken.json", json.dumps(tekken).encode())
        checkpoint = folder.path("ckpt")
    config = remote_config.model_copy(
        update={
            "remote": remote_config.remote.model_copy(update={"python": remote_python}),
            "checkpoint_dir": checkpoint,
        }
    )
    local_model = tmp_path / "tiny"
    shutil.copytree(tiny_model, local_model)
    output = tmp_path / "up.json"
    settings = UpsampleSettings(engine="hf", model=str(local_model), max_resolution=480, batch_size=1)
    with pytest.raises(
        PlanMismatchError, match=r"the host planned '\w+' differently \(width \d+ there, \d+ here"
    ):
        api.upsample(
            load_batch(examples).items,
            run_options(settings, output=output),
            output=output,
            executor=RemoteExecutor(config),
        )
