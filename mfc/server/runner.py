"""A model's runner process: one engine, driven by `mfc serve` over a socket.

``python -m mfc.server.runner --fd N`` inherits one end of a Unix socket pair
and speaks ``mfc.server.protocol``. The server process never imports
llama.cpp; everything that can crash inside it (a damaged GGUF aborting, a
segfault, running out of memory) happens here, and the server sees only a
closed socket and an exit status naming the signal.

Threads: the main thread reads frames; the engine's own thread runs every
llama.cpp call (the one-thread-per-model rule); one delivery thread forwards
the pieces of all running generations, one ``texts`` frame per engine step.
Sends go through one lock, so frames never interleave.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import dataclasses
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from mfc.server import protocol

log = logging.getLogger("mfc.runner")


class _Conn:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._lock = threading.Lock()

    def send(self, obj: dict[str, Any]) -> None:
        self.send_bytes(protocol.encode(obj))

    def send_bytes(self, data: bytes) -> None:
        """Whole frames, already encoded (several at once go out in one ``sendall``)."""
        # If the server went away, the main loop sees EOF and exits.
        with self._lock, contextlib.suppress(OSError):
            self.sock.sendall(data)


class _Tagged:
    """An engine sink that labels a generation's items with its request id."""

    __slots__ = ("_put", "_rid")

    def __init__(self, out: queue.SimpleQueue[tuple[int, tuple[str, Any]]], rid: int):
        self._put = out.put
        self._rid = rid

    def put(self, item: tuple[str, Any], /) -> None:
        self._put((self._rid, item))


def _load_options(raw: dict[str, Any]) -> Any:
    from mfc.runtime.options import LoadOptions

    fields = LoadOptions.__dataclass_fields__
    return LoadOptions(**{k: v for k, v in raw.items() if k in fields})


def _sampling(raw: dict[str, Any]) -> Any:
    from mfc.runtime.options import SamplingOptions

    fields = SamplingOptions.__dataclass_fields__
    values = {k: v for k, v in raw.items() if k in fields}
    if "stop" in values:
        values["stop"] = tuple(values["stop"])
    return SamplingOptions(**values)


def _images(raw: Any) -> list[bytes]:
    """``images``: standard base64 strings → the encoded image bytes (decoded by the engine)."""
    if not raw:
        return []
    if not isinstance(raw, list):
        raise ValueError("images must be a list of base64 strings")
    images = []
    for i, item in enumerate(raw, 1):
        try:
            images.append(base64.b64decode(item, validate=True))
        except (binascii.Error, TypeError, ValueError):
            raise ValueError(f"image {i} is not valid base64") from None
    return images


class Runner:
    def __init__(self, conn: _Conn):
        self.conn = conn
        self.engine: Any = None
        self.generations: dict[int, Any] = {}  # running: id -> Generation (a cancel handle)
        self._lock = threading.Lock()
        # Every generation's items, tagged with its id, for the one delivery thread.
        self._out: queue.SimpleQueue[tuple[int, tuple[str, Any]]] = queue.SimpleQueue()
        self._delivery: threading.Thread | None = None
        self._warnings: dict[int, list[str]] = {}  # delivery thread only
        self._tokens: dict[int, list[int]] = {}
        self._logprobs: dict[int, list[Any]] = {}  # entries for the next text item (delivery)

    # -- ops ------------------------------------------------------------------

    def load(self, msg: dict[str, Any]) -> None:
        from mfc.runtime.engine import Engine, EngineError
        from mfc.runtime.model import Adapter

        start = time.perf_counter_ns()
        adapters = [Adapter(Path(p), float(s)) for p, s in msg.get("adapters", [])]
        kwargs: dict[str, Any] = {}
        if "n_seq_max" in msg:
            kwargs["n_seq_max"] = int(msg["n_seq_max"])
        if msg.get("projector"):
            kwargs["projector"] = Path(msg["projector"])
        try:
            self.engine = Engine(
                Path(msg["model_path"]), _load_options(msg["load"]), adapters, **kwargs
            )
        except (EngineError, OSError, ValueError) as exc:
            self.conn.send({"t": "error", "id": 0, "message": str(exc), "kind": "load"})
            return
        self.conn.send({"t": "loaded", "load_ns": time.perf_counter_ns() - start})

    def generate(self, msg: dict[str, Any]) -> None:
        rid = int(msg["id"])
        prompt = msg["tokens"] if msg.get("tokens") is not None else msg["prompt"]
        images = _images(msg.get("images"))
        with self._lock:
            if self._delivery is None:
                self._delivery = threading.Thread(target=self._deliver, daemon=True)
                self._delivery.start()
        gen = self.engine.generate(
            prompt,
            _sampling(msg.get("sampling") or {}),
            grammar=msg.get("grammar"),
            out=_Tagged(self._out, rid),
            logprobs=bool(msg.get("logprobs")),
            top_logprobs=int(msg.get("top_logprobs") or 0),
            images=images,
        )
        with self._lock:
            self.generations[rid] = gen

    def _deliver(self) -> None:
        """Forward every generation's items: one wake-up and one ``sendall`` per engine step.

        The engine hands a step's items over right before ``llama_decode``, so this thread
        runs while the 2 decode threads compute; one thread per stream meant N wake-ups
        (and N frames for the server to parse) per step, each able to preempt a decode
        thread that the rest of the step then waits for.
        """
        out = self._out
        while True:
            batch = [out.get()]
            while True:
                try:
                    batch.append(out.get_nowait())
                except queue.Empty:
                    break
            # [id, piece] or [id, piece, logprobs]: one line each for the client, in order
            texts: list[list[Any]] = []
            ends: list[dict[str, Any]] = []
            stop = False
            for rid, (kind, value) in batch:
                if rid < 0:  # the stop marker from close(), after every generation's end
                    stop = True
                elif kind == "text":
                    entries = self._logprobs.pop(rid, None)
                    texts.append([rid, value] if entries is None else [rid, value, entries])
                elif kind == "logprobs":  # the engine sends them right before their text
                    self._logprobs[rid] = value
                elif kind == "warning":
                    self._warnings.setdefault(rid, []).append(value)
                elif kind == "tokens":
                    self._tokens[rid] = value
                else:
                    ends.append(self._end_frame(rid, kind, value))
            try:
                data = b""
                if texts:  # before the ends: a request's last text precedes its done
                    data = protocol.encode({"t": "texts", "items": texts})
                data += b"".join(protocol.encode(frame) for frame in ends)
            except Exception:  # a bug here must not silence every later generation
                log.exception("runner: cannot encode a step's frames")
                data = b""
            if data:
                self.conn.send_bytes(data)
            if stop:
                return

    def _end_frame(self, rid: int, kind: str, value: Any) -> dict[str, Any]:
        from mfc.runtime.engine import PromptTooLongError

        with self._lock:
            self.generations.pop(rid, None)
        warnings = self._warnings.pop(rid, [])
        self._logprobs.pop(rid, None)
        tokens = self._tokens.pop(rid, [])
        if kind == "done":
            stats = value
            return {
                "t": "done",
                "id": rid,
                "stats": {
                    "total_duration": stats.total_duration,
                    "load_duration": stats.load_duration,
                    "prompt_eval_count": stats.prompt_eval_count,
                    "prompt_eval_duration": stats.prompt_eval_duration,
                    "eval_count": stats.eval_count,
                    "eval_duration": stats.eval_duration,
                    "done_reason": stats.done_reason,
                    "stop_sequence": stats.stop_sequence,
                },
                "tokens": list(tokens),
                "warnings": warnings,
            }
        if isinstance(value, PromptTooLongError):
            return {
                "t": "error",
                "id": rid,
                "message": str(value),
                "kind": "prompt_too_long",
                "n_tokens": value.n_tokens,
                "n_ctx": value.n_ctx,
            }
        # the engine's error for this request; the runner lives on
        return {"t": "error", "id": rid, "message": str(value), "kind": "engine"}

    def cancel(self, msg: dict[str, Any]) -> None:
        with self._lock:
            gen = self.generations.get(int(msg["id"]))
        if gen is not None:
            gen.cancel_event.set()  # the pump sees the end within one step

    def _in_thread(self, rid: int, fn: Any) -> None:
        def run() -> None:
            try:
                value = fn()
            except Exception as exc:
                kind = "prompt_too_long" if type(exc).__name__ == "PromptTooLongError" else "engine"
                extra = {}
                if kind == "prompt_too_long":
                    extra = {"n_tokens": exc.n_tokens, "n_ctx": exc.n_ctx}  # type: ignore[attr-defined]
                self.conn.send(
                    {"t": "error", "id": rid, "message": str(exc), "kind": kind, **extra}
                )
                return
            self.conn.send({"t": "result", "id": rid, "value": value})

        threading.Thread(target=run, daemon=True).start()

    def tokenize(self, msg: dict[str, Any]) -> None:
        self._in_thread(int(msg["id"]), lambda: self.engine.tokenize(msg["text"]))

    def detokenize(self, msg: dict[str, Any]) -> None:
        tokens = [int(t) for t in msg.get("tokens") or ()]
        self._in_thread(int(msg["id"]), lambda: self.engine.detokenize(tokens))

    def embed(self, msg: dict[str, Any]) -> None:
        inputs = list(msg.get("inputs") or [])
        truncate = bool(msg.get("truncate", True))

        def run() -> dict[str, Any]:
            vectors = []
            counts = 0
            for text in inputs:
                tokens = self.engine.tokenize(text)
                if len(tokens) >= self.engine.n_ctx:
                    if not truncate:
                        from mfc.runtime.engine import PromptTooLongError

                        raise PromptTooLongError(len(tokens), self.engine.n_ctx)
                    text = self.engine.detokenize(tokens[: self.engine.n_ctx - 1])
                    tokens = tokens[: self.engine.n_ctx - 1]
                counts += len(tokens)
                vectors.append(self.engine.embed(text))
            return {"embeddings": vectors, "prompt_eval_count": counts}

        self._in_thread(int(msg["id"]), run)

    def counters(self, msg: dict[str, Any]) -> None:
        value = dataclasses.asdict(self.engine.counters) if self.engine is not None else {}
        if self.engine is not None:
            value.update(running=self.engine.running, waiting=self.engine.waiting)
        self.conn.send({"t": "result", "id": int(msg["id"]), "value": value})

    def close(self) -> None:
        with self._lock:
            gens = list(self.generations.values())
        for gen in gens:
            gen.cancel_event.set()
        if self.engine is not None:
            self.engine.close()  # after this, every generation's last item is queued
            self.engine = None
        if self._delivery is not None:
            self._out.put((-1, ("stop", None)))
            self._delivery.join(5)


def serve(sock: socket.socket) -> int:
    conn = _Conn(sock)
    runner = Runner(conn)
    ops = {
        "load": runner.load,
        "generate": runner.generate,
        "cancel": runner.cancel,
        "tokenize": runner.tokenize,
        "detokenize": runner.detokenize,
        "embed": runner.embed,
        "counters": runner.counters,
    }
    while True:
        msg = protocol.recv(sock)
        if msg is None or msg.get("op") == "exit":
            break
        op = ops.get(str(msg.get("op")))
        if op is None:
            conn.send(
                {"t": "error", "id": msg.get("id", 0), "message": f"unknown op {msg.get('op')!r}"}
            )
            continue
        try:
            op(msg)
        except Exception as exc:  # a bad frame fails that request, never the runner
            conn.send({"t": "error", "id": msg.get("id", 0), "message": str(exc), "kind": "engine"})
    runner.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mfc-runner", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="inherited socket file descriptor")
    args = parser.parse_args(argv)
    # The server decides when to stop a runner; Ctrl-C in the server's terminal reaches the
    # whole process group, and the server shuts its runners down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=os.environ.get("MFC_RUNNER_LOG", "WARNING"), stream=sys.stderr)
    sock = socket.socket(fileno=args.fd)
    try:
        return serve(sock)
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(main())
