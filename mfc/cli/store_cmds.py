"""Store commands: list, show, rm, cp, gc, verify, save, load.

Daemonless: each works on the store directory (``$MFC_MODELS``) directly.
Wiring only; the logic lives in ``mfc.store``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mfc.store import InvalidNameError, Problem, Store, StoreError
from mfc.store.show import human_bytes

if TYPE_CHECKING:
    from mfc.diagnostics.diagnostic import Diagnostic


def _store() -> Store:
    return Store.from_env()


def _diagnostic(exc: StoreError | InvalidNameError) -> Diagnostic:
    """The coded diagnostic for a store error: what went wrong, and a separate `help:`."""
    from mfc.diagnostics import codes
    from mfc.store import MissingBlobError, ModelNotFoundError
    from mfc.store.image import REPAIR_HINT

    if isinstance(exc, ModelNotFoundError):
        return codes.UNKNOWN_MODEL(None, f"model `{exc.display}` not found", exc.hint)
    if isinstance(exc, InvalidNameError):
        return codes.INVALID_MODEL_NAME(None, exc.what, exc.why)
    hint = REPAIR_HINT if isinstance(exc, MissingBlobError) else None
    return codes.STORE_FAILED(None, str(exc), hint)


def _report(exc: StoreError | InvalidNameError) -> None:
    from mfc.diagnostics.render import render_human

    click.echo(render_human([_diagnostic(exc)]), err=True, nl=False)


@contextmanager
def _errors() -> Iterator[None]:
    """Turn store errors into coded diagnostics on stderr and exit status 1."""
    try:
        yield
    except (StoreError, InvalidNameError) as exc:
        _report(exc)
        sys.exit(1)


_AGO = (
    (60, 1, "second"),
    (3600, 60, "minute"),
    (86400, 3600, "hour"),
    (7 * 86400, 86400, "day"),
    (30 * 86400, 7 * 86400, "week"),
    (365 * 86400, 30 * 86400, "month"),
)


def human_ago(seconds: float) -> str:
    """`Less than a second ago`, `About a minute ago`, `3 weeks ago` (as Ollama prints)."""
    s = max(0, int(seconds))
    if s < 1:
        return "Less than a second ago"
    unit, name = next(((u, n) for limit, u, n in _AGO if s < limit), (365 * 86400, "year"))
    count = s // unit
    if count == 1:
        return f"About {'an' if name == 'hour' else 'a'} {name} ago"
    return f"{count} {name}s ago"


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_(as_json: bool) -> None:
    """List models in the store (NAME, ID, SIZE, MODIFIED)."""
    skipped: list[Problem] = []
    with _errors():
        entries = _store().list_models(skipped)
    for problem in skipped:
        click.echo(f"warning: {problem.message} (see `mfc verify`)", err=True)
    if as_json:
        rows = [
            {
                "name": e.name.display,
                "model": str(e.name),
                "id": e.digest,
                "size": e.size,
                "modified": _iso(e.modified),
            }
            for e in entries
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, padding=(0, 4, 0, 0), header_style=None)
    for column in ("NAME", "ID", "SIZE", "MODIFIED"):
        table.add_column(column, no_wrap=True)
    now = time.time()
    for e in entries:
        hex_id = e.digest.split(":", 1)[1][:12]
        table.add_row(e.name.display, hex_id, human_bytes(e.size), human_ago(now - e.modified))
    console = Console()
    if console.is_terminal:
        console.print(table)
        return
    # Piped: no width limit, no styling, no padding after the last column.
    plain = Console(width=10_000, color_system=None, file=sys.stdout)
    with plain.capture() as capture:
        plain.print(table)
    for line in capture.get().splitlines():
        click.echo(line.rstrip())


@click.command()
@click.argument("name")
@click.option("--modelfile", "what", flag_value="modelfile", help="A Modelfile that rebuilds it.")
@click.option("--parameters", "what", flag_value="parameters", help="Only the parameters.")
@click.option("--template", "what", flag_value="template", help="Only the template.")
@click.option("--system", "what", flag_value="system", help="Only the system prompt.")
@click.option("--license", "what", flag_value="license", help="Only the license(s).")
@click.option("--json", "what", flag_value="json", help="Everything, as JSON.")
def show(name: str, what: str | None) -> None:
    """Show a model's details."""
    from mfc.store.image import read_image
    from mfc.store.show import format_show, param_block, render_modelfile, show_header

    store = _store()
    with _errors():
        view = read_image(store, name)
        if what == "modelfile":
            click.echo(render_modelfile(view, header=show_header(view)), nl=False)
            return
    if what == "json":
        click.echo(json.dumps(view.to_json(), indent=2, sort_keys=True, ensure_ascii=False))
    elif what == "template":
        click.echo(view.template or "", nl=not (view.template or "").endswith("\n"))
    elif what == "system":
        click.echo(view.system or "")
    elif what == "license":
        click.echo("\n\n".join(view.licenses))
    elif what == "parameters":
        click.echo(param_block(view.params), nl=False)
    else:
        click.echo(format_show(view), nl=False)


@click.command()
@click.argument("names", nargs=-1, required=True)
def rm(names: tuple[str, ...]) -> None:
    """Remove models, then the blobs no model uses any more."""
    from mfc.store import StoreBusyError

    store = _store()
    failed = False
    for name in names:
        try:
            removed = store.remove(name)
        except (StoreError, InvalidNameError) as exc:
            _report(exc)
            failed = True
            continue
        click.echo(f"deleted '{removed.display}'")
    try:
        freed = store.gc()
    except StoreBusyError:
        click.echo(
            "note: a build is writing to the store; run `mfc gc` later to free space", err=True
        )
        freed = []
    except StoreError as exc:
        click.echo(f"warning: blobs not pruned: {exc}", err=True)
        freed = []
    if freed:
        click.echo(f"freed {human_bytes(sum(i.size for i in freed))}")
    if failed:
        sys.exit(1)


@click.command()
@click.argument("source")
@click.argument("destination")
def cp(source: str, destination: str) -> None:
    """Copy a model to a new name (same blobs, same ID)."""
    from mfc.store import parse_name

    with _errors():
        store = _store()
        src = store.resolve(source)
        store.copy(src, destination)
        click.echo(f"copied '{src.display}' to '{parse_name(destination).display}'")


@click.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
def gc(dry_run: bool) -> None:
    """Remove blobs no model references, and leftover temp files."""
    with _errors():
        items = _store().gc(dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for item in items:
        click.echo(f"{verb} {item.digest or 'temp file'}  {human_bytes(item.size)}  {item.path}")
    blobs = sum(1 for i in items if i.digest)
    temps = len(items) - blobs
    total = human_bytes(sum(i.size for i in items))
    click.echo(f"{verb} {blobs} blob(s) and {temps} temp file(s), {total}")


@click.command()
@click.argument("name", required=False)
def verify(name: str | None) -> None:
    """Re-hash blobs (of one model, or the whole store) and report corruption."""
    with _errors():
        problems = _store().verify(name)
    for p in problems:
        click.echo(f"{p.kind}: {p.message}", err=True)
    if problems:
        click.echo(f"{len(problems)} problem(s) found", err=True)
        sys.exit(1)
    click.echo("ok: every blob matches its digest")


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write a tarball.")
@click.option(
    "--oci-layout", "layout_dir", type=click.Path(path_type=Path), help="Write a layout directory."
)
def save(names: tuple[str, ...], output: Path | None, layout_dir: Path | None) -> None:
    """Save models as an OCI image layout (tarball or directory)."""
    from mfc.store import oci_layout

    if output is None and layout_dir is None:
        raise click.UsageError("give -o FILE.tar or --oci-layout DIR")
    with _errors():
        entries = oci_layout.save(_store(), names, tar_path=output, layout_dir=layout_dir)
    for e in entries:
        click.echo(f"saved {e.name.display} {e.manifest.digest}")


@click.command()
@click.option(
    "-i",
    "--input",
    "source",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="An OCI layout tarball (or directory).",
)
def load(source: Path) -> None:
    """Load models from an OCI image layout, verifying every digest."""
    from mfc.store import oci_layout

    with _errors():
        entries = oci_layout.load(_store(), source)
    for e in entries:
        click.echo(f"loaded {e.name.display} {e.manifest.digest}")
