"""The server's side of a runner process: start it, talk to it, notice when it dies.

One ``RunnerProcess`` per loaded model. Requests are multiplexed over its
socket by id; a reader task routes each incoming frame to its request's
queue. When the socket closes unexpectedly (llama.cpp aborted, the OOM killer,
``kill -9``), every request still open on it ends with ``RunnerDied`` naming
the signal, and the scheduler drops the runner so the next request starts a
fresh one.

The runner's stderr comes through the server: each line goes to the server's
log, and the last few are kept so that a crash names its cause — llama.cpp
prints ``GGML_ASSERT(...) failed`` to stderr right before it aborts, and that
line is the "llama.cpp's reason" a 500 for a model that cannot load carries.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from mfc.server import protocol

log = logging.getLogger("mfc.server")


STDERR_LINES = 50  # kept for crash reports
STDERR_LINE_CHARS = 2000
# What llama.cpp / ggml / the C++ runtime / CPython print right before dying.
CRASH_MARKERS = ("GGML_ASSERT", "GGML_ABORT", "terminate called", "what():", "Fatal Python error")


class RunnerError(RuntimeError):
    """The runner answered a request with an error (bad prompt, llama.cpp refused, …)."""

    def __init__(self, message: str, kind: str = "engine", detail: dict[str, Any] | None = None):
        super().__init__(message)
        self.kind = kind
        self.detail = detail or {}


class RunnerDied(RunnerError):
    """The runner process exited while requests were open."""


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "closed its connection"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with status {returncode}"


@dataclass
class _Pending:
    queue: asyncio.Queue[dict[str, Any] | None]


class RunnerProcess:
    """A started runner; ``load`` must succeed before other requests."""

    def __init__(self, label: str):
        self.label = label  # the model name, for error messages
        self.proc: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._load_waiter: asyncio.Future[dict[str, Any]] | None = None
        self.dead: str | None = None  # why, once the process is gone
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._stderr_task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def start(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            env = dict(os.environ)
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "mfc.server.runner",
                "--fd",
                str(child.fileno()),
                pass_fds=(child.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,  # Ctrl-C in the terminal goes to the server only
            )
        finally:
            child.close()
        assert self.proc.stderr is not None
        self._stderr_task = asyncio.create_task(self._drain_stderr(self.proc.stderr))
        reader, self._writer = await asyncio.open_unix_connection(sock=parent)
        self._reader_task = asyncio.create_task(self._read(reader))

    async def _drain_stderr(self, stream: asyncio.StreamReader) -> None:
        """Forward the runner's stderr to the log, keeping its last lines for crash reports."""
        partial = b""
        while True:
            chunk = await stream.read(65536)
            lines = (partial + chunk).split(b"\n")
            partial = lines.pop() if chunk else b""
            for raw in lines:
                text = raw.decode(errors="replace").rstrip()
                if text:
                    self._stderr_tail.append(text[:STDERR_LINE_CHARS])
                    log.warning("runner %s: %s", self.label, text)
            if not chunk:
                return

    def crash_reason(self) -> str | None:
        """The last line the runner printed that says why it crashed (GGML_ASSERT, …)."""
        for line in reversed(self._stderr_tail):
            if any(marker in line for marker in CRASH_MARKERS):
                # "/tmp/pip-wheel-…/llama.cpp/src/llama-model.cpp:1362: GGML_ASSERT(…) failed":
                # the build directory says nothing to a user; the file and line do.
                return re.sub(r"^\S*/(?=[^/\s]+:\d+: )", "", line.strip())
        return None

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                msg = await protocol.read_frame(reader)
                if msg is None:
                    break
                if msg.get("t") == "loaded" or (
                    msg.get("t") == "error" and msg.get("kind") == "load"
                ):
                    if self._load_waiter is not None and not self._load_waiter.done():
                        self._load_waiter.set_result(msg)
                    continue
                if msg.get("t") == "texts":  # one engine step: a piece for each request
                    for item in msg["items"]:  # [id, text] or [id, text, logprobs]
                        rid, text = item[0], item[1]
                        pending = self._pending.get(rid)
                        if pending is not None:
                            frame = {"t": "text", "id": rid, "text": text}
                            if len(item) > 2:
                                frame["logprobs"] = item[2]
                            pending.queue.put_nowait(frame)
                    continue
                pending = self._pending.get(int(msg.get("id", 0)))
                if pending is not None:
                    pending.queue.put_nowait(msg)
        except (protocol.ProtocolError, OSError, ValueError) as exc:
            log.warning("runner %s: %s", self.label, exc)
        await self._died()

    async def _died(self) -> None:
        returncode = None
        if self.proc is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                returncode = await asyncio.wait_for(self.proc.wait(), 5)
        if self._stderr_task is not None:  # the crash message is on stderr: read it all first
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(self._stderr_task), 2)
        self.dead = f"the model runner for {self.label} {describe_exit(returncode)}"
        why = self.crash_reason() if returncode != 0 else None
        if why:
            self.dead += f": {why}"
        if self._load_waiter is not None and not self._load_waiter.done():
            self._load_waiter.set_result({"t": "error", "kind": "died", "message": self.dead})
        for pending in self._pending.values():
            pending.queue.put_nowait(None)

    def _send(self, obj: dict[str, Any]) -> None:
        if self.dead is not None or self._writer is None:
            raise RunnerDied(self.dead or f"the model runner for {self.label} is not running")
        self._writer.write(protocol.encode(obj))

    async def load(self, spec: dict[str, Any], timeout: float) -> int:
        """Load the model; returns the load time in ns. RunnerError with llama.cpp's reason."""
        self._load_waiter = asyncio.get_running_loop().create_future()
        self._send({"op": "load", **spec})
        try:
            msg = await asyncio.wait_for(
                self._load_waiter, None if timeout == float("inf") else timeout
            )
        except asyncio.TimeoutError:
            raise RunnerError(
                f"loading {self.label} timed out after {timeout:g}s (OLLAMA_LOAD_TIMEOUT)", "load"
            ) from None
        if msg.get("t") != "loaded":
            raise RunnerError(msg.get("message") or "the model failed to load", "load")
        return int(msg.get("load_ns", 0))

    @contextlib.asynccontextmanager
    async def request(self, op: str, **fields: Any) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """Send one request; iterate its answer frames. Leaving early cancels it in the runner."""
        rid = next(self._ids)
        pending = _Pending(asyncio.Queue())
        self._pending[rid] = pending
        finished = False

        async def frames() -> AsyncIterator[dict[str, Any]]:
            nonlocal finished
            while True:
                msg = await pending.queue.get()
                if msg is None:
                    finished = True
                    raise RunnerDied(self.dead or f"the model runner for {self.label} stopped")
                kind = msg.get("t")
                if kind == "error":
                    finished = True
                    detail = {
                        k: v for k, v in msg.items() if k not in ("t", "id", "message", "kind")
                    }
                    raise RunnerError(str(msg.get("message")), str(msg.get("kind")), detail)
                yield msg
                if kind in ("done", "result"):
                    finished = True
                    return

        try:
            self._send({"op": op, "id": rid, **fields})
            yield frames()
        finally:
            self._pending.pop(rid, None)
            if not finished and self.dead is None:
                with contextlib.suppress(RunnerError, OSError):
                    self._send({"op": "cancel", "id": rid})

    def abort_requests(self, message: str, kind: str) -> None:
        """End every open request now with ``RunnerError(message, kind)``; cancel it in the
        runner (whose later frames for it are dropped: the request is no longer pending)."""
        for rid, pending in list(self._pending.items()):
            pending.queue.put_nowait({"t": "error", "id": rid, "kind": kind, "message": message})
            if self.dead is None:
                with contextlib.suppress(RunnerError, OSError):
                    self._send({"op": "cancel", "id": rid})

    async def call(self, op: str, **fields: Any) -> Any:
        async with self.request(op, **fields) as frames:
            async for msg in frames:
                if msg.get("t") == "result":
                    return msg.get("value")
        raise RunnerError(f"{op}: no answer")

    async def stop(self, grace: float = 3.0) -> None:
        """Ask the runner to exit; kill it if it does not within ``grace`` seconds."""
        if self.proc is None:
            return
        if self.proc.returncode is None:
            with contextlib.suppress(RunnerError, OSError):
                self._send({"op": "exit"})
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        if self._writer is not None:
            self._writer.close()
        for task in (self._reader_task, self._stderr_task):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, 5)
