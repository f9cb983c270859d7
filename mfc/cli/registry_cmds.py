"""Registry commands: push, login, logout (docs/registry.md).

Daemonless: push reads the store (``$MFC_MODELS``) and talks to the registry directly.
Wiring only; the logic lives in ``mfc.registry``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from mfc.store import InvalidNameError, Store, StoreError

if TYPE_CHECKING:
    from mfc.registry.progress import Event


@contextmanager
def _errors() -> Iterator[None]:
    """Registry, auth and store errors as one `error:` line on stderr and exit status 1."""
    from mfc.registry.client import RegistryError

    try:
        yield
    except (RegistryError, StoreError, InvalidNameError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


class _Bars:
    """A rich progress bar per layer; steps without a size as plain lines."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
        )
        self.tasks: dict[str, object] = {}

    def __call__(self, event: Event) -> None:
        from rich.progress import TaskID

        from mfc.registry.progress import Status

        if isinstance(event, Status):
            if event.text != "success":
                self.progress.console.print(event.text)
            return
        task = self.tasks.get(event.digest)
        if task is None:
            task = self.tasks[event.digest] = self.progress.add_task(
                event.status, total=event.total
            )
        assert isinstance(task, int)
        self.progress.update(TaskID(task), completed=event.completed)


@click.command()
@click.argument("name")
@click.option("--insecure", is_flag=True, help="Allow plain http (implied for localhost).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["ollama", "modelpack"]),
    default="ollama",
    show_default=True,
    help="Ollama's image (the store's manifest) or a CNCF ModelPack artifact.",
)
def push(name: str, insecure: bool, fmt: str) -> None:
    """Push a model to its registry: `mfc push HOST/NAMESPACE/MODEL:TAG`."""
    from mfc.registry.push import FORMATS
    from mfc.registry.push import push as push_model

    (format_,) = [f for f in FORMATS if f == fmt]
    with _errors():
        bars = _Bars()
        with bars.progress:
            result = push_model(
                Store.from_env(), name, insecure=insecure, progress=bars, format=format_
            )
        click.echo(f"pushed {result.name.display}@{result.digest}")


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.read().rstrip("\r\n")
    password = click.prompt("Password", hide_input=True, default="", show_default=False)
    assert isinstance(password, str)
    return password


@click.command()
@click.argument("registry")
@click.option("-u", "--username", help="User name (prompted for when omitted).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option("--insecure", is_flag=True, help="Allow plain http (implied for localhost).")
def login(registry: str, username: str | None, password_stdin: bool, insecure: bool) -> None:
    """Log in to a registry; the credentials are checked, then stored as `docker login` does."""
    from mfc.registry.auth import Credentials, check_login, save_credentials

    host = _host(registry)
    if username is None:
        if password_stdin:
            raise click.UsageError("--password-stdin needs --username")
        username = click.prompt("Username")
    if not username:
        raise click.UsageError("the user name is empty")
    password = _read_password(password_stdin)
    if not password:
        raise click.UsageError("the password is empty")
    with _errors():
        creds = Credentials(username, password, "mfc login")
        check_login(host, creds, insecure=insecure)
        where = save_credentials(host, creds)
    click.echo(f"Login succeeded: {username}@{host} (saved in {where})")


@click.command()
@click.argument("registry")
def logout(registry: str) -> None:
    """Forget the stored credentials for a registry."""
    from mfc.registry.auth import remove_credentials

    host = _host(registry)
    with _errors():
        removed = remove_credentials(host)
    click.echo(f"Removed login credentials for {host}" if removed else f"Not logged in to {host}")


def _host(registry: str) -> str:
    """``https://host:port/...`` or ``host:port`` → ``host:port`` (docker accepts both)."""
    host = registry.split("://", 1)[-1].split("/", 1)[0].strip()
    if not host:
        raise click.UsageError(f"not a registry host: {registry!r}")
    return host
