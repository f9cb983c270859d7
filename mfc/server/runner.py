"""A model's runner process: one engine, driven by `mfc serve` over a socket.

``python -m mfc.server.runner --fd N`` inherits one end of a Unix socket pair
and speaks ``mfc.server.protocol``. The server process never imports
llama.cpp; everything that can crash inside it (a damaged GGUF aborting, a
segfault, running out of memory) happens here, and the server sees only a
closed socket and an exit status naming the signal.

Threads: the main thread reads frames; the engine's own thread runs every
llama.cpp call (the one-thread-per-model rule); one pump thread per running
generation forwards its pieces. Sends go through one lock, so frames never
interleave.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
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
        data = protocol.encode(obj)
        # If the server went away, the main loop sees EOF and exits.
        with self._lock, contextlib.suppress(OSError):
            self.sock.sendall(data)


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


def _grammar(fmt: Any) -> str | None:
    """GBNF for a request's ``format``: ``"json"``, or a JSON schema (llama-cpp-python converts)."""
    if fmt is None:
        return None
    if fmt == "json":
        from mfc.runtime.engine import json_grammar

        return json_grammar()
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return json_schema_to_gbnf(json.dumps(fmt))


class Runner:
    def __init__(self, conn: _Conn):
        self.conn = conn
        self.engine: Any = None
        self.generations: dict[int, Any] = {}
        self._lock = threading.Lock()

    # -- ops ------------------------------------------------------------------

    def load(self, msg: dict[str, Any]) -> None:
        from mfc.runtime.engine import Engine, EngineError
        from mfc.runtime.model import Adapter

        start = time.perf_counter_ns()
        adapters = [Adapter(Path(p), float(s)) for p, s in msg.get("adapters", [])]
        kwargs: dict[str, Any] = {}
        if "n_seq_max" in msg:
            kwargs["n_seq_max"] = int(msg["n_seq_max"])
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
        gen = self.engine.generate(
            prompt, _sampling(msg.get("sampling") or {}), grammar=_grammar(msg.get("format"))
        )
        with self._lock:
            self.generations[rid] = gen
        threading.Thread(target=self._pump, args=(rid, gen), daemon=True).start()

    def _pump(self, rid: int, gen: Any) -> None:
        from mfc.runtime.engine import PromptTooLongError

        try:
            for text in gen:
                self.conn.send({"t": "text", "id": rid, "text": text})
            stats = gen.stats
            self.conn.send(
                {
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
                    },
                    "tokens": list(getattr(gen, "tokens", None) or []),
                    "warnings": list(gen.warnings),
                }
            )
        except PromptTooLongError as exc:
            self.conn.send(
                {
                    "t": "error",
                    "id": rid,
                    "message": str(exc),
                    "kind": "prompt_too_long",
                    "n_tokens": exc.n_tokens,
                    "n_ctx": exc.n_ctx,
                }
            )
        except Exception as exc:  # the engine's error for this request; the runner lives on
            self.conn.send({"t": "error", "id": rid, "message": str(exc), "kind": "engine"})
        finally:
            with self._lock:
                self.generations.pop(rid, None)

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
            self.engine.close()
            self.engine = None


def serve(sock: socket.socket) -> int:
    conn = _Conn(sock)
    runner = Runner(conn)
    ops = {
        "load": runner.load,
        "generate": runner.generate,
        "cancel": runner.cancel,
        "tokenize": runner.tokenize,
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
