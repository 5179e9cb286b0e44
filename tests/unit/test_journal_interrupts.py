"""SIGTERM during a journal write: the interrupt comes after the line is saved and counted, also
when another thread of the process takes the signal (the main thread blocks it while it writes,
but Python runs every handler in the main thread, at once, whichever thread took it)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cosmos_workflow import journal as journal_module
from cosmos_workflow.cli.app import Interrupted, _interrupt
from cosmos_workflow.journal import Journal, saved_this_process
from cosmos_workflow.specs.results import UpsampleRecord


@pytest.fixture
def cli_handler() -> Iterator[None]:
    """The CLI's SIGTERM handler, and a thread that does not block SIGTERM (as the preprocessing
    pool's do): the kernel gives it the signal while the main thread holds it."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    release = threading.Event()
    other = threading.Thread(target=release.wait, daemon=True)
    other.start()
    try:
        yield
    finally:
        release.set()
        other.join()
        signal.signal(signal.SIGTERM, previous)


def test_sigterm_in_the_middle_of_a_journal_write_comes_after_it(
    tmp_path: Path, cli_handler: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    fsync = os.fsync

    def signalled_while_writing(fd: int) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # inside the held block, before the line is counted
        fsync(fd)

    monkeypatch.setattr(journal_module.os, "fsync", signalled_while_writing)
    record = UpsampleRecord(name="a", original_prompt="p", upsampled_prompt="long", status="ok", key="a")

    with pytest.raises(Interrupted) as interrupted:
        journal.append([record])

    assert interrupted.value.signum == signal.SIGTERM
    assert journal.path.read_text().count("\n") == 1
    assert saved_this_process()[journal.path] == 1  # what the interrupt message reports
