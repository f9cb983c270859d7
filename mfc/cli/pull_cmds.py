"""``mfc pull``: wiring only; the logic is ``mfc.registry.pull``.

A rich progress bar per layer (Ollama's ``pulling <12 hex>``), the steps as lines, and a
summary with the model ID; errors as one ``error:`` line and exit status 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mfc.cli.store_cmds import _errors, _store, human_bytes


@click.command()
@click.argument("name")
@click.option("--insecure", is_flag=True, help="Allow plain http (loopback hosts always may).")
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=None,
    help=(
        "Parallel connections per blob (default $MFC_MAX_TRANSFER_STREAMS, else 4; "
        "for a registry on this machine one per two CPUs)."
    ),
)
@click.option(
    "--to",
    "to",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    metavar="DIR",
    help="Fill the OCI image layout DIR (e.g. registry_cache/) instead of the store.",
)
def pull(name: str, insecure: bool, max_connections: int | None, to: Path | None) -> None:
    """Pull a model from a registry: [host[:port]/][namespace/]model[:tag][@sha256:…].

    With --to DIR the model goes into an OCI image layout (created, or added to), which
    builds can then use offline as their registry cache (--registry-cache DIR)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskID,
        TextColumn,
        TransferSpeedColumn,
    )

    from mfc.registry.client import RegistryError
    from mfc.registry.progress import Event, LayerProgress
    from mfc.registry.pull import pull as do_pull
    from mfc.registry.pull_layout import pull_to_layout
    from mfc.registry.transfer import options_from

    console = Console(stderr=True)
    try:
        options = options_from(max_connections)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        transient=False,
    )
    tasks: dict[str, TaskID] = {}

    def show(event: Event) -> None:
        if isinstance(event, LayerProgress):
            task = tasks.get(event.digest)
            if task is None:
                task = tasks[event.digest] = bars.add_task(event.status, total=event.total)
            bars.update(task, completed=event.completed)
        else:
            bars.console.print(event.text)

    with _errors():
        try:
            with bars:
                if to is not None:
                    result = pull_to_layout(
                        to, name, insecure=insecure, progress=show, options=options
                    )
                else:
                    result = do_pull(
                        _store(), name, insecure=insecure, progress=show, options=options
                    )
        except RegistryError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
    where = f" into {to}" if to is not None else ""
    click.echo(
        f"pulled {result.name.display}{where} {result.digest}"
        f" ({human_bytes(result.size)}, {human_bytes(result.downloaded)} downloaded)"
    )
