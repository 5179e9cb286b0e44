"""``cosmos-workflow remote check`` and ``remote trust``: get a GPU host ready for ``--remote``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from cosmos_workflow.cli.app import EXIT_FAILED, app, setup_logging, stderr, stdout
from cosmos_workflow.cli.options import ConfigFile

remote_app = typer.Typer(
    name="remote", help="The remote GPU host of --remote: check it, trust its key.", no_args_is_help=True
)
app.add_typer(remote_app)

_STYLES = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


@remote_app.command("check")
def check(config: ConfigFile = None) -> None:
    """One line per check, with the fix: host key, authentication, remote_dir, Docker and the
    image (or the interpreter), GPUs, the checkpoint. Exit 1 when any check fails."""
    from cosmos_workflow.executors.remote import check_remote, load_remote_config

    setup_logging(quiet=True)
    failed = 0
    for result in check_remote(load_remote_config(config)):
        line = Text.assemble(
            (f"{result.verdict.upper():<4}", _STYLES[result.verdict]), f"  {result.name:<14} "
        )
        line.append(result.detail)
        if result.fix:
            line.append(f"  -> fix: {result.fix}", style="cyan")
        stdout.print(line, highlight=False)
        failed += result.verdict == "fail"
    if failed:
        raise typer.Exit(EXIT_FAILED)


@remote_app.command("trust")
def trust(
    config: ConfigFile = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="record without asking")] = False,
    replace: Annotated[
        bool, typer.Option(help="replace a different key on record (after a host was reinstalled)")
    ] = False,
) -> None:
    """Show the host's key fingerprint and record it in known_hosts."""
    from cosmos_workflow.executors.remote import host_key_status, load_remote_config, trust_host
    from cosmos_workflow.executors.remote.hostkeys import describe_key, refuse_changed

    setup_logging(quiet=True)
    settings = load_remote_config(config).remote
    status = host_key_status(settings)
    stdout.print(f"{status.name} presents {describe_key(status.key)}", markup=False, highlight=False)
    if status.trusted:
        stdout.print(f"already trusted in {settings.known_hosts}", markup=False, highlight=False)
        return
    refuse_changed(status, settings, replace=replace)  # CHANGED is said first, and refused
    stderr.print(
        "compare it with the host's own (there: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)",
        markup=False,
        highlight=False,
    )
    question = (
        f"the key on record is {describe_key(status.known[0])}: it has CHANGED; replace it"
        if status.changed
        else "record this key"
    )
    if not yes and not typer.confirm(f"{question} in {settings.known_hosts}?"):
        raise typer.Exit(EXIT_FAILED)
    done = trust_host(status, settings, replace=replace)
    stdout.print(f"{done} in {settings.known_hosts}", markup=False, highlight=False)
