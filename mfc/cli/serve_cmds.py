"""`mfc serve`, and `mfc ps` / `mfc stop`, which are clients of a running server.

Everything else (build, run, list, …) works without a server, on the store
directly; these three are about the server's loaded models, as in Ollama.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
import urllib.error
import urllib.request
from typing import Any

import click


def _fail(message: str, hint: str | None = None) -> None:
    click.echo(f"error: {message}", err=True)
    if hint:
        click.echo(f"help: {hint}", err=True)
    sys.exit(1)


@click.command()
@click.option(
    "--host",
    default=None,
    help="Address to listen on (default: $MFC_HOST, $OLLAMA_HOST, 127.0.0.1:11434).",
)
def serve(host: str | None) -> None:
    """Serve Ollama's HTTP API on 127.0.0.1:11434 (see docs/serve.md)."""
    from mfc.server.config import ConfigError, load, parse_host

    try:
        overrides: dict[str, Any] = {}
        if host is not None:
            overrides["address"] = parse_host(host)
        loaded = load(**overrides)
    except ConfigError as exc:
        _fail(str(exc), "see the table of variables in docs/serve.md")
        return
    from mfc.server.main import run

    sys.exit(run(loaded))


def _base_url() -> str:
    from mfc.server.config import ConfigError, load

    try:
        return load().config.address.connect_url
    except ConfigError as exc:
        _fail(str(exc))
        raise AssertionError from exc


def _call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    url = _base_url() + path
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:
            text = resp.read().decode()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(detail).get("error", detail)
        _fail(str(detail))
    except (urllib.error.URLError, OSError) as exc:
        _fail(
            f"could not connect to mfc serve at {url}: {getattr(exc, 'reason', exc)}",
            "start it with `mfc serve` (the address comes from MFC_HOST / OLLAMA_HOST)",
        )
    return json.loads(text) if text.strip() else None


@click.command()
def ps() -> None:
    """List the models a running `mfc serve` has loaded."""
    data = _call("GET", "/api/ps") or {}
    rows = [("NAME", "ID", "SIZE", "CONTEXT", "UNTIL")]
    for m in data.get("models", []):
        rows.append(
            (
                m.get("name", ""),
                (m.get("digest") or "")[:12],
                _size(int(m.get("size") or 0)),
                str(m.get("context_length") or ""),
                until(m.get("expires_at") or ""),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("    ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def until(expires_at: str) -> str:
    """``ollama ps``'s UNTIL column: "Forever", "4 minutes from now", "Stopping..."."""
    try:
        when = dt.datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    except ValueError:
        return ""
    if when.year >= 9999:
        return "Forever"
    seconds = (when - dt.datetime.now(dt.timezone.utc)).total_seconds()
    if seconds <= 0:
        return "Stopping..."
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if seconds >= size or unit == "second":
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} from now"
    return ""


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


@click.command()
@click.argument("name")
def stop(name: str) -> None:
    """Unload a model from a running `mfc serve` (as `ollama stop`)."""
    _call("POST", "/api/generate", {"model": name, "keep_alive": 0, "stream": False})
