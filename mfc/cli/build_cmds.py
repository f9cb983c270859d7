"""`mfc build` and its Ollama-style alias `mfc create`: flags in, ``mfc.build`` call, output.

Progress and diagnostics go to stderr; stdout gets exactly one line, the
manifest digest (the model ID), so scripts can capture it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # the front-end and builder load only when a build runs
    from mfc.build import BuildEvent
    from mfc.diagnostics.diagnostic import Diagnostic

_LINK = click.Choice(["auto", "copy", "hard"])


def _render(diagnostics: Iterable[Diagnostic]) -> str:
    """The front-end's rendering (source line, caret, help), reading each cited file once."""
    from mfc.diagnostics.render import render_human
    from mfc.modelfile.parser import parse_bytes

    diags = list(diagnostics)
    sources = {}
    for name in {d.span.file for d in diags if d.span is not None}:
        try:
            sources[name] = parse_bytes(Path(name).read_bytes(), name).source
        except OSError:
            continue
    return render_human(diags, sources)


def _parse_build_args(values: tuple[str, ...]) -> dict[str, str]:
    args: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got `{item}`", param_hint="--build-arg")
        args[key] = value
    return args


def _stderr_is_terminal() -> bool:
    """What rich would decide, without importing rich (≈30 ms) for a piped or quiet build."""
    import os

    if os.environ.get("FORCE_TERMINAL") or os.environ.get("FORCE_COLOR"):
        return True
    if os.environ.get("TTY_COMPATIBLE") == "0":
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class _BarEvents:
    """Build events onto one rich task: a spinner per step, a byte bar while a file is stored.

    Each step gets a fresh task: rich's ``update(total=None)`` keeps the old total,
    so reusing the task would show the previous file's byte count in later steps.
    """

    def __init__(self, bar: Any):
        self.bar = bar
        self.task = bar.add_task("building…", total=None)

    def __call__(self, event: BuildEvent) -> None:
        if event.kind == "step":
            self.bar.remove_task(self.task)
            self.task = self.bar.add_task(event.message, total=None)
        elif event.kind == "bytes":
            self.bar.update(self.task, total=event.total, completed=event.done)
        else:
            self.bar.console.print(f"[dim]{event.message}[/dim]", highlight=False)


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[BuildEvent], None]]:
    """Rich progress on stderr on a terminal; facts as plain lines otherwise."""
    if quiet or not _stderr_is_terminal():

        def plain(event: BuildEvent) -> None:
            if not quiet and event.kind == "info":
                click.echo(event.message, err=True)

        yield plain
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TransferSpeedColumn,
    )

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        yield _BarEvents(bar)


def _run_build(
    modelfile: Path,
    context_dir: Path,
    tag: str | None,
    build_args: tuple[str, ...],
    locked: bool,
    no_cache: bool,
    quantize: str | None,
    link: str,
    registry_cache: Path | None,
    quiet: bool,
) -> None:
    from mfc.build import build_modelfile
    from mfc.diagnostics.diagnostic import DiagnosticError
    from mfc.modelfile.refs import modelfile_in
    from mfc.store.store import Store, StoreError

    from_stdin = str(modelfile) == "-"
    if not from_stdin:
        modelfile = modelfile_in(modelfile)
    if not from_stdin and not modelfile.is_file():
        click.echo(f"error: no Modelfile at {modelfile}", err=True)
        click.echo(
            "help: name the file with `-f FILE`, or give the directory that holds it", err=True
        )
        sys.exit(1)
    if from_stdin and locked:
        click.echo(
            "error: --locked needs a Modelfile on disk (its lockfile is beside it)", err=True
        )
        sys.exit(1)
    args = _parse_build_args(build_args)
    try:
        with _progress(quiet) as progress:
            if from_stdin:
                from mfc.build import build_text

                result = build_text(
                    sys.stdin.read(),
                    context_dir,
                    tag,
                    store=Store.from_env(),
                    source="<stdin>",
                    build_args=args,
                    no_cache=no_cache,
                    quantize=quantize,
                    link=link,  # type: ignore[arg-type]
                    registry_cache=registry_cache,
                    progress=progress,
                )
            else:
                result = build_modelfile(
                    modelfile,
                    tag,
                    store=Store.from_env(),
                    build_args=args,
                    locked=locked,
                    no_cache=no_cache,
                    quantize=quantize,
                    link=link,  # type: ignore[arg-type]
                    registry_cache=registry_cache,
                    progress=progress,
                )
    except DiagnosticError as exc:
        click.echo(_render(exc.diagnostics), err=True, nl=False)
        sys.exit(1)
    except (StoreError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if result.diagnostics:
        click.echo(_render(result.diagnostics), err=True, nl=False)
    if not quiet:
        what = f"built {result.name.display}" if result.name else "built (untagged)"
        click.echo(f"{what} {result.manifest_digest[7:19]}", err=True)
    click.echo(result.manifest_digest)


_common = [
    click.option(
        "--build-arg",
        "build_args",
        multiple=True,
        metavar="KEY=VALUE",
        help="Set an ARG (repeatable).",
    ),
    click.option("--locked", is_flag=True, help="Refuse to build if inputs drift from the lock."),
    click.option("--no-cache", is_flag=True, help="Ignore the stat and quantize caches."),
    click.option(
        "--link",
        type=_LINK,
        default="auto",
        show_default=True,
        help="How file inputs enter the store: reflink-or-copy, copy, or hard link.",
    ),
    click.option(
        "--registry-cache",
        type=click.Path(path_type=Path, file_okay=True),
        default=None,
        help="OCI image layout to resolve `FROM name` in (default: $MFC_REGISTRY_CACHE, "
        "else a registry_cache/ above the Modelfile or the working directory).",
    ),
    click.option("--quiet", is_flag=True, help="Print only the digest (and errors)."),
]


def _with_common(fn):
    for option in reversed(_common):
        fn = option(fn)
    return fn


@click.command("build")
@click.option(
    "-f",
    "--file",
    "file_",
    type=click.Path(path_type=Path),
    default=None,
    help="The Modelfile (default: CONTEXT_DIR/Modelfile; `-` reads stdin, paths then "
    "relative to CONTEXT_DIR).",
)
@click.option("-t", "--tag", default=None, help="Name the result, e.g. `mymodel:1.0`.")
@click.option("--quantize", default=None, metavar="TYPE", help="Quantize the base (e.g. Q4_K_M).")
@_with_common
@click.argument("context_dir", type=click.Path(path_type=Path), default=Path("."))
def build(
    file_: Path | None,
    tag: str | None,
    quantize: str | None,
    build_args: tuple[str, ...],
    locked: bool,
    no_cache: bool,
    link: str,
    registry_cache: Path | None,
    quiet: bool,
    context_dir: Path,
) -> None:
    """Build a model image from a Modelfile; print its digest.

    Paths in the Modelfile are relative to the Modelfile's directory. Writes
    Modelfile.lock next to it.
    """
    modelfile = file_ if file_ is not None else context_dir / "Modelfile"
    _run_build(
        modelfile,
        context_dir,
        tag,
        build_args,
        locked,
        no_cache,
        quantize,
        link,
        registry_cache,
        quiet,
    )


@click.command("create")
@click.argument("name")
@click.option(
    "-f",
    "--file",
    "file_",
    type=click.Path(path_type=Path),
    default=Path("Modelfile"),
    show_default=True,
    help="The Modelfile.",
)
@click.option("-q", "--quantize", default=None, metavar="TYPE", help="Quantize the base.")
@_with_common
def create(
    name: str,
    file_: Path,
    quantize: str | None,
    build_args: tuple[str, ...],
    locked: bool,
    no_cache: bool,
    link: str,
    registry_cache: Path | None,
    quiet: bool,
) -> None:
    """Create NAME from a Modelfile (Ollama's `create`; same as `build -t NAME -f FILE`)."""
    _run_build(
        file_, Path("."), name, build_args, locked, no_cache, quantize, link, registry_cache, quiet
    )
