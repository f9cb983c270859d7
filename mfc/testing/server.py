"""A real `mfc serve` on a free 127.0.0.1 port, for tests and benchmarks.

Test modules import these directly (``from mfc.testing.server import start_server``);
``tests/server/conftest.py`` builds its shared ``served`` fixture from them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from mfc.build import build_text
from mfc.store import Store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    store: Store
    proc: subprocess.Popen[bytes]
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def runner_pids(self) -> list[int]:
        """Child processes of the server (its runners)."""
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True
        )
        return [int(p) for p in out.stdout.split()]


def build_counter(store: Store, fixture_models: dict[str, Path], tag: str, extra: str = "") -> None:
    text = f"FROM {fixture_models['counter-f32.gguf']}\n{extra}"
    build_text(text, Path.cwd(), tag, store=store)


def start_server(tmp: Path, store: Store, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    log = tmp / f"serve-{port}.log"
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "MFC_"))},
        "MFC_MODELS": str(store.root),
        "MFC_HOST": f"127.0.0.1:{port}",
        **(env or {}),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mfc", "serve"],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mfc serve exited {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url + "/", timeout=1).status_code == 200:
                return Server(url, store, proc, log)
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"mfc serve did not start:\n{log.read_text()}")


def stop_server(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(10)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
