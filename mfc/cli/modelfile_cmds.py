"""`mfc parse`, `mfc check`, `mfc fmt`: wiring only; the work is in mfc.modelfile."""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import sys
import tempfile
from pathlib import Path

import click

from mfc.diagnostics import codes
from mfc.diagnostics.diagnostic import Diagnostic, has_errors
from mfc.diagnostics.render import diagnostics_to_json, render_human, summary
from mfc.diagnostics.source import SourceFile
from mfc.modelfile.check import CheckResult, check_parsed
from mfc.modelfile.format import UnrepresentableValue, dominant_newline, format_modelfile
from mfc.modelfile.ir import Instruction
from mfc.modelfile.jsonform import instruction_to_json
from mfc.modelfile.parser import ParseResult, parse_bytes

_FILES = click.argument("files", nargs=-1, required=True, type=click.Path(allow_dash=True))


def _read(name: str) -> tuple[bytes | None, Diagnostic | None]:
    if name == "-":
        return sys.stdin.buffer.read(), None
    try:
        return Path(name).read_bytes(), None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return None, codes.UNREADABLE_FILE(None, f"cannot read `{name}`: {reason}")


def _parse(name: str) -> ParseResult | tuple[Diagnostic, SourceFile]:
    data, problem = _read(name)
    if problem is not None or data is None:
        assert problem is not None
        return problem, SourceFile(name, "")
    return parse_bytes(data, name)


def _emit_human(diags: tuple[Diagnostic, ...], source: SourceFile) -> None:
    if diags:
        click.echo(render_human(diags, {source.name: source}), err=True, nl=False)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file, one per line.")
@_FILES
def parse(as_json: bool, files: tuple[str, ...]) -> None:
    """Parse Modelfiles: syntax only (use `mfc check` for parameters, templates, paths)."""
    failed = False
    for name in files:
        result = _parse(name)
        diags: tuple[Diagnostic, ...]
        instructions: tuple[Instruction, ...]
        if isinstance(result, tuple):
            diags, source, instructions = (result[0],), result[1], ()
        else:
            diags, source, instructions = result.diagnostics, result.source, result.instructions
        ok = not has_errors(diags)
        failed |= not ok
        if as_json:
            record = {
                "file": name,
                "ok": ok,
                "instructions": [instruction_to_json(i) for i in instructions],
                "diagnostics": diagnostics_to_json(diags),
            }
            click.echo(json.dumps(record, ensure_ascii=False))
        else:
            _emit_human(diags, source)
            if ok:
                click.echo(f"{name}: ok ({len(instructions)} instructions)")
    sys.exit(1 if failed else 0)


def _build_args(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not eq:
            value = os.environ.get(key, "")  # Docker's `--build-arg NAME` form
        out[key] = value
    return out


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file, one per line.")
@click.option("--build-arg", "build_args", multiple=True, metavar="K=V", help="Set an ARG.")
@click.option("--no-paths", is_flag=True, help="Do not check that FROM/ADAPTER/DRAFT paths exist.")
@_FILES
def check(as_json: bool, build_args: tuple[str, ...], no_paths: bool, files: tuple[str, ...]):
    """Check Modelfiles: syntax and semantics (exit 1 on any error)."""
    args = _build_args(build_args)
    failed = False
    for name in files:
        parsed = _parse(name)
        if isinstance(parsed, tuple):
            result = CheckResult(None, (parsed[0],), parsed[1])
        else:
            base = None if no_paths or name == "-" else Path(name).parent
            result = check_parsed(parsed, args, base)
        failed |= not result.ok
        if as_json:
            record = {
                "file": name,
                "ok": result.ok,
                "diagnostics": diagnostics_to_json(result.diagnostics),
            }
            click.echo(json.dumps(record, ensure_ascii=False))
        else:
            _emit_human(result.diagnostics, result.source)
            status = "ok" if result.ok else "failed"
            click.echo(f"{name}: {status} ({summary(result.diagnostics)})")
    sys.exit(1 if failed else 0)


def _write_atomic(path: Path, text: str) -> None:
    data = text.encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@click.command()
@click.option("--check", "check_only", is_flag=True, help="Exit 1 if a file would change.")
@click.option("--diff", "show_diff", is_flag=True, help="Print a unified diff; change nothing.")
@_FILES
def fmt(check_only: bool, show_diff: bool, files: tuple[str, ...]) -> None:
    """Rewrite Modelfiles in canonical form (`-` formats stdin to stdout)."""
    failed = changed = False
    for name in files:
        result = _parse(name)
        if isinstance(result, tuple):
            _emit_human((result[0],), result[1])
            failed = True
            continue
        if not result.ok:
            _emit_human(result.diagnostics, result.source)
            click.echo(f"{name}: not formatted (fix the errors first)", err=True)
            failed = True
            continue
        original = result.source.text
        newline = dominant_newline(original)
        try:
            formatted = format_modelfile(result.modelfile, newline=newline)
        except UnrepresentableValue as exc:
            click.echo(f"{name}: {exc}", err=True)
            failed = True
            continue
        if name == "-" and not (check_only or show_diff):
            click.echo(formatted, nl=False)
            continue
        if formatted == original:
            continue
        changed = True
        if show_diff:
            diff = difflib.unified_diff(
                original.splitlines(keepends=True),
                formatted.splitlines(keepends=True),
                fromfile=f"a/{name}",
                tofile=f"b/{name}",
            )
            click.echo("".join(diff), nl=False)
        elif check_only:
            click.echo(f"would reformat {name}", err=True)
        else:
            _write_atomic(Path(name), formatted)
            click.echo(f"reformatted {name}", err=True)
    sys.exit(1 if failed or ((check_only or show_diff) and changed) else 0)
