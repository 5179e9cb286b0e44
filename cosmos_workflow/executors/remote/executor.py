"""The remote executor: the planned jobs run on a GPU host over SSH, results stream back.

For the jobs it is given (already keyed, resumed and planned here), it:

1. connects (:mod:`.ssh`), ships this exact cosmos-workflow (:mod:`.code`),
2. uploads each distinct video the plans use once, by content, and the batch (:mod:`.transfer`):
   a video the probe refused here (not a video, unreadable, not a regular file) never leaves this
   machine; its item goes as text-only; the encoder tokenizer (``--encoder-tokenizer``), its
   ``tokenizer.json`` checked here first, goes the same way,
3. starts ``upsample-prompts`` on the host, detached (:mod:`.job`, :mod:`.command`), or reattaches
   to the one still running there for the same output,
4. streams the host's journal back: each record is checked against the local plan (frames,
   size, prompt tokens: a host that plans differently is stopped with the reason), mapped back to
   the local item (its key, its video, its clip downloaded) and appended to the local journal,
   which moves the progress bar,
5. on a dropped connection reconnects and reattaches; on Ctrl-C stops the remote job; on a
   failure keeps what came back (a rerun resumes: locally from the journal, remotely from the
   host's journal in the same job folder).
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from cosmos_workflow.engines.tiny import cache_root
from cosmos_workflow.errors import (
    ConfigError,
    RemoteCommandError,
    RemoteConnectionError,
    RemoteError,
    reason,
)
from cosmos_workflow.executors.base import Executor, RunContext
from cosmos_workflow.executors.remote import code
from cosmos_workflow.executors.remote.check import gpu_names
from cosmos_workflow.executors.remote.command import SCRIPT, RemotePaths, remote_command, remote_options
from cosmos_workflow.executors.remote.job import JournalTail, RemoteJob
from cosmos_workflow.executors.remote.settings import RemoteConfig
from cosmos_workflow.executors.remote.ssh import Connection
from cosmos_workflow.executors.remote.transfer import BLOBS, RemoteDir, safe_name
from cosmos_workflow.families import family_name, family_name_of_config, family_title
from cosmos_workflow.media import clip_path
from cosmos_workflow.runner import record_warning
from cosmos_workflow.specs.results import UpsampleRecord
from cosmos_workflow.tokenizer import encoder_tokenizer_file, load_encoder_tokenizer

if TYPE_CHECKING:
    from cosmos_workflow.config import RunOptions
    from cosmos_workflow.runner import Job

log = logging.getLogger("cosmos_workflow")

#: the remote job's exit statuses that mean "finished" (3: some items failed, each says why)
FINISHED = (0, 3)
#: record field -> plan field, where they differ
_PLAN_FIELD = {"prompt_tokens": "total_tokens"}


class PlanMismatchError(RemoteError):
    """The host planned an item differently from this machine, or its checkpoint is of another
    model family."""


#: the most of a host checkpoint's config.json read to learn its family
_CONFIG_CAP = 1 << 20


def host_family(connection: Connection, model: str) -> str | None:
    """The family (``Family.name``) of the host's checkpoint ``model``, read over SFTP: its
    config.json, else Pixtral for a Mistral-format folder (params.json or tekken.json). None where
    it cannot be told: a model name, not a folder there, neither file, an unreadable config.json."""
    folder = connection.expand(model)
    if not posixpath.isabs(folder):
        return None
    sftp = connection.sftp()
    try:
        names = set(sftp.listdir(folder))
        if "config.json" not in names:
            mistral = bool(names & {"params.json", "tekken.json"})
            return family_name_of_config(None, folder) if mistral else None
        with sftp.open(posixpath.join(folder, "config.json"), "rb") as handle:
            data = json.loads(handle.read(_CONFIG_CAP))
    except (OSError, ValueError):
        return None
    return family_name_of_config(data, f"the host's checkpoint {folder}")


def uses_video(job: Job) -> bool:
    """Whether the host needs the item's video: the probe here accepted it as a video and the plan
    is not text-only. Anything else the item names (a key, /etc/passwd, a FIFO) stays here."""
    return job.video is not None and job.plan.status != "text_only"


def container_name(job_id: str) -> str:
    """The Docker container's name for the job ``job_id`` (docker mode): one per job, so ``docker rm -f``
    stops this job's container and no other."""
    return f"cosmos-workflow-{job_id[-16:]}"


@dataclass
class _Pending:
    """A job waiting for its record from the host."""

    job: Job
    remote_video: str | None


@dataclass
class _Stream:
    """What the journal tail has delivered so far."""

    tail: JournalTail
    pending: dict[str, _Pending]
    received: int = 0
    stopped_for: list[str] = field(default_factory=list)


class RemoteExecutor(Executor):
    """Runs the jobs on the host of ``config`` (``[remote]``, ``[paths]``, ``[docker]``)."""

    name = "remote"

    def __init__(
        self,
        config: RemoteConfig,
        *,
        connection: Connection | None = None,
        poll_s: float = 0.5,
        reconnects: int = 5,
    ) -> None:
        self.config = config
        self.connection = connection or Connection(config.remote)
        self.poll_s = poll_s
        self.reconnects = reconnects
        self._output: Path | None = None

    def start(self, output: Path, options: RunOptions) -> None:
        self._output = output

    def execute(self, jobs: Sequence[Job], run: RunContext) -> None:
        if not jobs:
            return
        try:
            folder = RemoteDir(self.connection.open(), self.config.remote_dir)
            _RemoteRun(self, folder, run).go(list(jobs))
        finally:
            self.connection.close()

    def job_id(self, options: RunOptions) -> str:
        """One job folder per local output and option set: a rerun finds the same folder."""
        assert self._output is not None, "start() names the output first"
        identity = {
            "output": str(self._output.resolve()),
            "options": _options_identity(options),
            "mode": self.config.remote.mode,
            "image": self.config.image,
            "model": self.remote_model(options),
        }
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        return f"{safe_name(self._output.name, limit=40)}-{digest}"

    def remote_model(self, options: RunOptions) -> str:
        """The model as the host names it: ``[docker] checkpoint_dir``, else the run's model."""
        if self.config.checkpoint_dir:
            return self.config.checkpoint_dir
        model = options.engine.model
        if Path(model).is_dir():
            raise ConfigError(
                f"--model {model} is a folder on this machine; the host needs its own copy: set "
                "[docker] checkpoint_dir to the checkpoint's path on the host"
            )
        return model


class _RemoteRun:
    """One execute() call: ship, upload, start or reattach, stream back."""

    def __init__(
        self,
        executor: RemoteExecutor,
        folder: RemoteDir,
        run: RunContext,
    ) -> None:
        self.executor = executor
        self.config = executor.config
        self.folder = folder
        self.run = run
        job_id = executor.job_id(run.options)
        #: the encoder tokenizer's copy on the host (absolute), once uploaded
        self.encoder: str | None = None
        self.container = container_name(job_id)
        self.job = RemoteJob(folder, job_id, container=self.container if self._docker else None)

    @property
    def options(self) -> RunOptions:
        return self.run.options

    @property
    def _docker(self) -> bool:
        return self.config.remote.mode == "docker"

    @property
    def connection(self) -> Connection:
        return self.folder.connection

    @property
    def _python(self) -> str:
        """The host's interpreter (venv mode), ``~`` expanded there."""
        return self.connection.expand(self.config.remote.python)

    # -- the run ------------------------------------------------------------------------------------

    def go(self, jobs: list[Job]) -> None:
        self._check_family()
        videos = self._upload_videos(jobs)
        self.encoder = self._upload_encoder()
        pending = {job.item.name: _Pending(job, videos.get(job.item.video_path)) for job in jobs}
        stream = _Stream(JournalTail(self.folder, f"{self.job.dir}/out"), pending)
        if self.job.status().state == "running":
            log.warning(
                "reattaching to the job still running on %s (%s)", self.config.remote.host, self.job.dir
            )
        else:
            self._launch(stream)
        self._run_to_end(stream)
        if stream.pending:  # e.g. a reattached job whose batch held an item before it was edited
            log.warning(
                "the host returned no result for %d item(s) (%s); running them in a follow-up job",
                len(stream.pending),
                ", ".join(list(stream.pending)[:10]),
            )
            self._launch(stream, follow_up=True)
            self._run_to_end(stream)
        if stream.pending:
            log.error(
                "the host returned no result for %d item(s) (%s), even in a follow-up job; see %s there",
                len(stream.pending),
                ", ".join(list(stream.pending)[:10]),
                self.folder.path(self.job.file("job.log")),
            )

    def _check_family(self) -> None:
        """Refuse before anything is sent when the host's checkpoint is of another family than
        this machine's model: every plan would differ (else found out at the first record, after
        the host loaded the model and ran a batch). Where the host's checkpoint cannot be read
        (a model name), the per-record check stays the safety net."""
        model = self.executor.remote_model(self.options)
        there = host_family(self.connection, model)
        here = family_name(self.options.engine.model)
        if there is None or there == here:
            return
        raise PlanMismatchError(
            f"the host's checkpoint {model} is {family_title(there)}, but --model "
            f"{self.options.engine.model} here is {family_title(here)}; run the same checkpoint on "
            "both sides: pass this machine's copy with --model, or set [docker] checkpoint_dir to "
            "the host's copy of it"
        )

    def _run_to_end(self, stream: _Stream) -> None:
        """Follow the job until it ends; Ctrl-C / SIGTERM (KeyboardInterrupt, the CLI's
        Interrupted) stop it on the host too."""
        try:
            exit_code = self._follow(stream)
        except Exception:
            raise
        except BaseException:
            self._stop(stream, "interrupted", drain=True)
            raise
        self._check_exit(stream, exit_code)

    def _launch(self, stream: _Stream, *, follow_up: bool = False) -> None:
        """Start the job for the pending items; a follow-up adds to the job's journals (its
        results stream on from where the first job's stopped), never sets them aside."""
        paths = self._paths(self._ship_code())
        self._write_batch(stream)
        if self.options.force and not follow_up:
            self._set_aside_journals()
        self.folder.makedirs(f"{self.job.dir}/out")
        self.folder.makedirs(BLOBS)  # docker mode mounts it, also when no video was sent
        clips = paths.clips if self._clips_wanted else None
        if clips:
            self.folder.makedirs(f"{self.job.dir}/clips")
        gpus = min(self.config.remote.gpus, len(gpu_names(self.connection)))
        model = self.connection.expand(self.executor.remote_model(self.options))
        wanted = self.options.model_copy(update={"force": False}) if follow_up else self.options
        options = remote_options(
            wanted, model=model, clips_dir=clips, num_gpu=gpus, encoder_tokenizer=self.encoder
        )
        owner = self._owner() if self._docker else ""
        command = remote_command(
            self.config, paths, options, gpus=gpus, container=self.container, owner=owner
        )
        self.job.start(command.argv, command.env)
        log.info("started the job on %s (%s)", self.config.remote.host, self.job.dir)

    def _owner(self) -> str:
        """The remote user's ``UID:GID`` (the container runs the job as that user)."""
        ids = [self.connection.run(["id", flag]).stdout.strip() for flag in ("-u", "-g")]
        return ":".join(ids)

    @property
    def _clips_wanted(self) -> bool:
        return self.options.clips_dir is not None and self.options.plan.preprocess

    def _ship_code(self) -> code.Wheel:
        """This cosmos-workflow onto the host: installed (venv) or beside the script (docker)."""
        wheel = code.build_wheel(cache_root())
        if not self._docker:
            code.install_in_venv(self.connection, self.folder, self._python, wheel)
            return wheel
        self.folder.upload_as(wheel.path, wheel.remote_path)
        self.folder.upload_as(code.SCRIPT, f"{wheel.remote_dir}/{SCRIPT}")
        self.connection.run(["docker", "rm", "-f", self.container], check=False, timeout=60)
        return wheel

    def _write_batch(self, stream: _Stream) -> None:
        batch = [
            {"name": p.job.item.name, "prompt": p.job.item.prompt, "video_path": p.remote_video}
            for p in stream.pending.values()
        ]
        data = json.dumps(batch, ensure_ascii=False).encode()
        self.folder.write_bytes(f"{self.job.dir}/batch.json", data)
        log.info("batch: %d items (%.1f KB)", len(batch), len(data) / 1e3)

    def _set_aside_journals(self) -> None:
        """``--force``: the host's earlier results must not stream back as this run's."""
        out = f"{self.job.dir}/out"
        for name in self.folder.listdir(out):
            if name.endswith(".journal.jsonl"):
                self.folder.rename(f"{out}/{name}", f"{out}/{name}.old")

    def _paths(self, wheel: code.Wheel) -> RemotePaths:
        folder, job = self.folder, self.job
        return RemotePaths(
            batch=folder.path(job.file("batch.json")),
            output=folder.path(job.file("out/results.json")),
            clips=folder.path(job.file("clips")),
            code=folder.path(wheel.remote_dir),
            wheel=folder.path(wheel.remote_path),
            blobs=folder.path("blobs"),
            job=folder.path(job.dir),
            python=self._python,
        )

    # -- uploads ------------------------------------------------------------------------------------

    def _upload_videos(self, jobs: list[Job]) -> dict[Path | None, str]:
        """Each distinct video the plans use, once, by content: local path -> absolute remote path."""
        local = sorted({job.item.video_path for job in jobs if job.item.video_path and uses_video(job)})
        uploads = [self.folder.upload(path) for path in local]
        sent = [u for u in uploads if u.sent]
        kept = {job.item.video_path for job in jobs if job.item.video_path} - set(local)
        log.info(
            "videos: %d distinct, %d sent (%.1f MB), %d already on the host%s",
            len(local),
            len(sent),
            sum(u.sent for u in sent) / 1e6,
            len(local) - len(sent),
            f"; {len(kept)} not sent (not a usable video: text-only)" if kept else "",
        )
        return {path: self.folder.path(u.remote) for path, u in zip(local, uploads, strict=True)}

    def _upload_encoder(self) -> str | None:
        """The encoder tokenizer's ``tokenizer.json``, loaded here first (a file that is not one
        is refused in one line before anything starts there), then sent by content: its absolute
        path on the host."""
        path = self.options.encoder_tokenizer
        if path is None:
            return None
        load_encoder_tokenizer(path.expanduser())
        file = encoder_tokenizer_file(path.expanduser())
        assert file is not None, "choose() refuses a folder without tokenizer.json"
        upload = self.folder.upload(file)
        log.info("encoder tokenizer: %s", "sent" if upload.sent else "already on the host")
        return self.folder.path(upload.remote)

    # -- following the job --------------------------------------------------------------------------

    def _follow(self, stream: _Stream) -> int:
        """Stream records until the job ends; reconnect and reattach when the connection drops."""
        failures = 0
        while True:
            try:
                self._take(stream)
                status = self.job.status()
                if status.state == "exited":
                    self._take(stream)
                    return status.exit_code if status.exit_code is not None else 1
                if status.state in ("lost", "none"):
                    self._take(stream)
                    raise RemoteCommandError(
                        f"the job on {self.config.remote.host} ended without an exit status (killed, or the "
                        f"host restarted); its log ends with: {self._log_tail()}; rerun to resume"
                    )
                failures = 0
                time.sleep(self.executor.poll_s)
            except RemoteConnectionError as exc:
                failures += 1
                if failures > self.executor.reconnects:
                    raise RemoteConnectionError(
                        f"{exc}; the job keeps running on the host: rerun the same command to reattach"
                    ) from exc
                log.warning(
                    "connection to %s lost (%s); reconnecting (try %d of %d): the job runs on there",
                    self.config.remote.host,
                    reason(exc.__cause__ or exc),
                    failures,
                    self.executor.reconnects,
                )
                self.connection.open()

    def _take(self, stream: _Stream) -> None:
        """New records from the host: checked, mapped to the local items, journaled here."""
        arrived: list[tuple[UpsampleRecord, _Pending]] = []
        for line in stream.tail.read():
            record = self._parse(line)
            pending = stream.pending.get(record.name) if record else None
            if record is None or pending is None or not self._same_item(record, pending):
                continue
            self._check_plan(record, pending.job, stream)
            arrived.append((record, pending))
            del stream.pending[record.name]
        clips = self._fetch_clips([(record, pending.job) for record, pending in arrived])
        fresh = [self._local_record(record, pending, clips.get(record.name)) for record, pending in arrived]
        if fresh:
            self.run.save(fresh)
            stream.received += len(fresh)

    @staticmethod
    def _parse(line: str) -> UpsampleRecord | None:
        try:
            return UpsampleRecord.model_validate_json(line)
        except ValidationError:
            return None  # a torn line: the host redoes that item and writes it again

    @staticmethod
    def _same_item(record: UpsampleRecord, pending: _Pending) -> bool:
        """The host's record is for this item as it is now (an older run may have left others)."""
        return record.original_prompt == pending.job.item.prompt and record.video_path == pending.remote_video

    def _check_plan(self, record: UpsampleRecord, job: Job, stream: _Stream) -> None:
        """The host's plan must be this machine's: frames, size and prompt tokens (a plan the
        engine shrank there at run time keeps its frames and text, not its size)."""
        plan = job.plan
        changes, known = record.plan_changes, plan.changes
        shrunk_there = len(changes) > len(known) and changes[: len(known)] == known
        fields = ["frames", "text_tokens"] + ([] if shrunk_there else ["width", "height", "prompt_tokens"])
        here = {name: getattr(plan, _PLAN_FIELD.get(name, name)) for name in fields}
        there = {name: getattr(record, name) for name in fields}
        if here == there:
            return
        self._stop(stream, "the host planned differently")
        differences = ", ".join(
            f"{n} {there[n]} there, {here[n]} here" for n in fields if here[n] != there[n]
        )
        raise PlanMismatchError(
            f"the host planned {record.name!r} differently ({differences}); run the same model on both "
            "sides (its family and tokenizer decide the token counts: config.json and tekken.json, or "
            "tokenizer.json and preprocessor_config.json): pass the checkpoint's folder with --model "
            "here, or set [docker] checkpoint_dir to the same checkpoint"
        )

    def _local_record(self, record: UpsampleRecord, pending: _Pending, clip: str | None) -> UpsampleRecord:
        job = pending.job
        local_video = str(job.item.video_path) if job.item.video_path else None
        texts = {
            name: getattr(record, name).replace(pending.remote_video, local_video or "")
            if pending.remote_video and getattr(record, name)
            else getattr(record, name)
            for name in ("error", "warning")
        }
        if self.encoder:  # an answer over the encoder's limit names the tokenizer as given here
            texts = {
                name: text and text.replace(self.encoder, str(self.options.encoder_tokenizer))
                for name, text in texts.items()
            }
        if local_video and not pending.remote_video:  # not sent: why is this machine's to say
            texts["warning"] = record_warning(job)
        return record.model_copy(
            update={"key": job.key, "video_path": local_video, "preprocessed_video": clip, **texts}
        )

    def _fetch_clips(self, arrived: list[tuple[UpsampleRecord, Job]]) -> dict[str, str]:
        """The clips the host wrote, downloaded (verified; hashed there in one command) to where a
        local run writes them: item name -> local clip."""
        clips_dir = self.options.clips_dir
        root = self.folder.root + "/"
        wanted = {
            record.name: (
                posixpath.relpath(record.preprocessed_video, root),
                clip_path(clips_dir, job.item.name, job.key),
            )
            for record, job in arrived
            if clips_dir is not None
            and record.preprocessed_video
            and record.preprocessed_video.startswith(root)
        }
        if not wanted:
            return {}
        digests = self.folder.sha256_many([remote for remote, _ in wanted.values()])
        for remote, target in wanted.values():
            self.folder.download(remote, target, sha256=digests[remote])
        return {name: str(target) for name, (_, target) in wanted.items()}

    # -- the end ------------------------------------------------------------------------------------

    def _stop(self, stream: _Stream, why: str, *, drain: bool = False) -> None:
        """Stop the remote job; with ``drain``, keep the results it wrote until then."""
        log.warning("%s: stopping the job on %s", why, self.config.remote.host)
        try:
            self.connection.reconnect()  # an interrupt may have cut a call on the old one midway
            self.job.stop()
            if drain:
                self._take(stream)
        except RemoteError as exc:
            log.error(
                "could not stop the job on the host (%s); it may still be running in %s", exc, self.job.dir
            )

    def _check_exit(self, stream: _Stream, code: int) -> None:
        if code not in FINISHED:
            raise RemoteCommandError(
                f"the job on {self.config.remote.host} failed (exit {code}) after {stream.received} "
                f"result(s) came back; its log ends with: {self._log_tail()}; fix that and rerun: "
                "finished items are kept",
                returncode=code,
            )

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.job.log_tail(8).splitlines()) or "(empty)"
        except RemoteError:
            return "(log unreadable)"


def _options_identity(options: RunOptions) -> dict[str, object]:
    """The options that name a job folder; those added with issue 25 (system prompt, ASCII-only
    answers, the encoder) are left out while unset, so a rerun of an earlier job finds its folder."""
    data: dict[str, object] = options.model_dump(mode="json", exclude={"force", "clips_dir", "workers"})
    data["sampling"] = options.sampling.key()
    plan = options.plan.model_dump(mode="json")
    if plan["system_prompt"] is None:
        del plan["system_prompt"]
    data["plan"] = plan
    for later in ("encoder_tokenizer", "encoder_limit"):
        if data[later] is None:
            del data[later]
    return data
