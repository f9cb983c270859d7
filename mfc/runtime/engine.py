"""The one module that talks to llama.cpp (through llama-cpp-python).

Every llama.cpp call for a loaded model runs on one dedicated worker thread:
with the OpenMP build, decoding from a different OS thread than before is
1.5–16× slower (OpenMP's thread team belongs to the calling thread). Callers
on any thread submit work to the worker; a generation streams its text back
through a queue, and cancelling only sets a flag the worker checks between
tokens — nothing (not a signal handler, not the HTTP server) calls llama.cpp
from elsewhere. `llama_threads` records every thread that ever ran llama code,
so tests can prove the rule holds.
"""

from __future__ import annotations

import ctypes
import dataclasses
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mfc.runtime.model import Adapter
from mfc.runtime.options import LoadOptions, SamplingOptions
from mfc.runtime.stats import Stats
from mfc.runtime.stream import TextStream

T = TypeVar("T")

DEFAULT_SEED = 0xFFFFFFFF  # llama.cpp: pick a random seed


class EngineError(RuntimeError):
    """llama.cpp refused something (a model or adapter that will not load, a full context)."""


class PromptTooLongError(EngineError):
    def __init__(self, n_tokens: int, n_ctx: int):
        self.n_tokens = n_tokens
        self.n_ctx = n_ctx
        super().__init__(
            f"the prompt is {n_tokens} tokens but the context window (num_ctx) is {n_ctx}"
        )


def json_grammar() -> str:
    """llama.cpp's GBNF for any JSON value (what `--format json` constrains output to)."""
    from llama_cpp.llama_grammar import JSON_GBNF

    return JSON_GBNF


class _Worker:
    """A thread that runs submitted callables one at a time, in order."""

    def __init__(self, name: str):
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def ident(self) -> int | None:
        return self._thread.ident

    def _run(self) -> None:
        # Ctrl-C must reach the main thread: a SIGINT the kernel hands to this
        # thread (or to the OpenMP threads it spawns, which inherit the mask)
        # would only be noticed by the main thread at its next wake-up, e.g. a
        # keystroke at the REPL prompt.
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        while (job := self._jobs.get()) is not None:
            fn, fut = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        fut: Future[T] = Future()
        self._jobs.put((fn, fut))
        return fut

    def call(self, fn: Callable[[], T]) -> T:
        return self.submit(fn).result()

    def stop(self) -> None:
        self._jobs.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join()


@dataclass
class Generation:
    """One streaming answer: iterate for text chunks; `stats` and `text` once done.

    Closing the iterator early (or Ctrl-C while waiting) cancels the generation
    and waits for the worker to finish the current token, so the engine is
    immediately ready for the next request.
    """

    _chunks: queue.SimpleQueue[tuple[str, Any]]
    cancel_event: threading.Event
    text: str = ""
    stats: Stats | None = None
    warnings: list[str] = field(default_factory=list)
    _done: bool = False

    def __iter__(self) -> Iterator[str]:
        try:
            while not self._done:
                kind, value = self._chunks.get()
                if kind == "text":
                    self.text += value
                    yield value
                elif kind == "warning":
                    self.warnings.append(value)
                elif kind == "done":
                    self.stats = value
                    self._done = True
                else:  # "error"
                    self._done = True
                    raise value
        finally:
            if not self._done:
                self.cancel()

    def cancel(self) -> None:
        """Stop after the current token and wait until the worker is free again.

        The answer counts as cancelled even if the worker had already finished:
        the caller stopped reading, so nobody saw the rest of it.
        """
        self.cancel_event.set()
        while not self._done:
            kind, value = self._chunks.get()
            if kind == "done":
                self.stats = value
                self._done = True
            elif kind == "error":
                self._done = True
        if self.stats is not None and self.stats.done_reason != "cancel":
            self.stats = dataclasses.replace(self.stats, done_reason="cancel")

    def result(self) -> str:
        """Run to the end (no streaming) and return the whole text."""
        for _ in self:
            pass
        return self.text


class _PieceReader:
    """token -> bytes, reusing one buffer (llama-cpp-python's helper returns NUL padding)."""

    def __init__(self, vocab: Any):
        self._vocab = vocab
        self._size = 64
        self._buf = ctypes.create_string_buffer(self._size)

    def __call__(self, token: int) -> bytes:
        import llama_cpp

        n = llama_cpp.llama_token_to_piece(self._vocab, token, self._buf, self._size, 0, False)
        if n < 0:  # buffer too small: -n is the size needed
            self._size = -n
            self._buf = ctypes.create_string_buffer(self._size)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, self._buf, self._size, 0, False)
        return self._buf.raw[:n]


class Engine:
    """A loaded model (weights + adapters + context) driven from its own thread."""

    def __init__(
        self,
        model_path: Path,
        load: LoadOptions,
        adapters: Sequence[Adapter] = (),
    ):
        self.model_path = Path(model_path)
        self.load_options = load
        self.adapters = tuple(adapters)
        self.llama_threads: set[int] = set()
        self.load_duration_ns = 0
        self._llm: Any = None
        self._worker = _Worker(f"llama:{self.model_path.name}")
        try:
            self._call(self._load)
        except BaseException:
            self._worker.stop()
            raise

    # -- plumbing -------------------------------------------------------------

    def _call(self, fn: Callable[[], T]) -> T:
        return self._worker.call(self._tracked(fn))

    def _tracked(self, fn: Callable[[], T]) -> Callable[[], T]:
        def run() -> T:
            self.llama_threads.add(threading.get_ident())
            return fn()

        return run

    @property
    def worker_ident(self) -> int | None:
        return self._worker.ident

    def close(self) -> None:
        if self._llm is not None:
            self._call(self._free)
        self._worker.stop()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- on the worker thread -------------------------------------------------

    def _load(self) -> None:
        import llama_cpp

        start = time.perf_counter_ns()
        o = self.load_options
        kwargs: dict[str, Any] = {}
        if o.n_threads:
            kwargs.update(n_threads=o.n_threads, n_threads_batch=o.n_threads)
        try:
            llm = llama_cpp.Llama(
                model_path=str(self.model_path),
                n_ctx=o.n_ctx,
                n_batch=o.n_batch,
                n_ubatch=o.n_batch,
                n_gpu_layers=o.n_gpu_layers,
                main_gpu=o.main_gpu,
                use_mmap=o.use_mmap,
                verbose=False,
                **kwargs,
            )
        except ValueError as exc:
            raise EngineError(f"llama.cpp could not load {self.model_path}: {exc}") from None
        if self.adapters:
            handles = []
            for adapter in self.adapters:
                handle = llama_cpp.llama_adapter_lora_init(llm.model, str(adapter.path).encode())
                if not handle:
                    llm.close()
                    raise EngineError(
                        f"llama.cpp could not load the LoRA adapter {adapter.path} "
                        "(is it a GGUF LoRA made for this base model?)"
                    )
                handles.append(handle)  # freed together with the model
            n = len(handles)
            array = (llama_cpp.llama_adapter_lora_p_ctypes * n)(*handles)
            scales = (ctypes.c_float * n)(*(a.scale for a in self.adapters))
            if llama_cpp.llama_set_adapters_lora(llm.ctx, array, n, scales) != 0:
                llm.close()
                raise EngineError("llama.cpp refused to attach the LoRA adapters")
        self._llm = llm
        self.load_duration_ns = time.perf_counter_ns() - start

    def _free(self) -> None:
        self._llm.close()
        self._llm = None

    def _tokenize(self, text: str) -> list[int]:
        llm = self._llm
        model = llm._model
        bos = model.token_bos()
        # A template that writes `{{ bos_token }}` already has it: adding the
        # tokenizer's own would give two (and a llama.cpp warning).
        add_bos = model.add_bos_token() and not (
            bos >= 0 and text.startswith(model.token_get_text(bos))
        )
        tokens: list[int] = model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
        return tokens

    def _cached_prefix(self, tokens: Sequence[int]) -> int:
        llm = self._llm
        n = 0
        for a, b in zip(llm._input_ids, tokens, strict=False):
            if a != b:
                break
            n += 1
        return n - 1 if n == len(tokens) and n > 0 else n

    def _shift_context(self, num_keep: int, n_prompt: int) -> bool:
        """Make room as Ollama/llama.cpp do: keep the first `num_keep` tokens (plus
        BOS; all prompt tokens if negative), drop half of the rest, slide the tail."""
        llm = self._llm
        n = llm.n_tokens
        bos = llm._model.token_bos()
        keep = n_prompt if num_keep < 0 else num_keep + int(n > 0 and llm.input_ids[0] == bos)
        keep = max(0, min(keep, n - 2))
        discard = (n - keep) // 2
        if discard <= 0 or not llm._ctx.kv_cache_seq_rm(0, keep, keep + discard):
            return False
        llm._ctx.kv_cache_seq_shift(0, keep + discard, n, -discard)
        llm.input_ids[keep : n - discard] = llm.input_ids[keep + discard : n].copy()
        llm.n_tokens = n - discard
        return True

    def _generate(
        self,
        tokens: list[int],
        s: SamplingOptions,
        grammar_text: str | None,
        cancel: threading.Event,
        out: queue.SimpleQueue[tuple[str, Any]],
    ) -> None:
        """The decode loop (llama-cpp-python's `eval` + a llama.cpp sampler chain).

        Not `Llama.generate`: that loop cannot shift the context when it fills.
        """
        import llama_cpp
        from llama_cpp.llama_grammar import LlamaGrammar

        llm = self._llm
        start = time.perf_counter_ns()
        n_ctx = min(llm.n_ctx(), self.load_options.n_ctx)  # input_ids has the requested size
        if len(tokens) >= n_ctx:
            raise PromptTooLongError(len(tokens), n_ctx)
        # Reuse the KV cache for the prefix this prompt shares with the last one
        # (a conversation re-sends its history every turn).
        reuse = self._cached_prefix(tokens)
        if reuse > 0 and llm._ctx.kv_cache_seq_rm(-1, reuse, -1):
            llm.n_tokens = reuse
        else:
            llm.reset()
            reuse = 0
        llm.set_seed(s.seed if s.seed >= 0 else DEFAULT_SEED)
        llm.last_n_tokens_size = n_ctx if s.repeat_last_n < 0 else s.repeat_last_n
        grammar = LlamaGrammar.from_string(grammar_text, verbose=False) if grammar_text else None
        sampler = llm._init_sampler(
            top_k=s.top_k,
            top_p=s.top_p,
            min_p=s.min_p,
            typical_p=s.typical_p,
            temp=s.temperature,
            repeat_penalty=s.repeat_penalty,
            frequency_penalty=s.frequency_penalty,
            presence_penalty=s.presence_penalty,
            grammar=grammar,
        )
        limit = n_ctx if s.num_predict == -2 else s.num_predict
        stream = TextStream(s.stop)
        vocab = llm._model.vocab
        piece = _PieceReader(vocab)
        ctx = llm._ctx
        generated = 0
        reason = "stop"
        try:
            llm.eval(tokens[reuse:])
            first = time.perf_counter_ns()
            while True:
                token = sampler.sample(ctx, -1)
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    break
                generated += 1
                text = stream.feed(piece(token))
                if text:
                    out.put(("text", text))
                if stream.stopped:
                    break
                if cancel.is_set():
                    reason = "cancel"
                    break
                if 0 <= limit <= generated:
                    reason = "length"
                    break
                if llm.n_tokens >= n_ctx and (
                    s.num_predict == -2 or not self._shift_context(s.num_keep, len(tokens))
                ):
                    reason = "length"
                    out.put(("warning", f"the context window (num_ctx={n_ctx}) is full"))
                    break
                llm.eval([token])
        finally:
            sampler.close()
        tail = stream.finish()
        if tail:
            out.put(("text", tail))
        end = time.perf_counter_ns()
        out.put(
            (
                "done",
                Stats(
                    total_duration=end - start,
                    load_duration=0,
                    prompt_eval_count=len(tokens) - reuse,
                    prompt_eval_duration=first - start,
                    eval_count=generated,
                    eval_duration=end - first,
                    done_reason=reason,
                ),
            )
        )

    # -- public API (any thread) ------------------------------------------------

    @property
    def n_ctx(self) -> int:
        return self.load_options.n_ctx

    def tokenize(self, text: str) -> list[int]:
        """Tokens exactly as `generate` would feed them (BOS per the model, specials parsed)."""
        return self._call(lambda: self._tokenize(text))

    def detokenize(self, tokens: Sequence[int]) -> str:
        data: bytes = self._call(lambda: self._llm._model.detokenize(list(tokens)))
        return data.decode("utf-8", errors="replace")

    def generate(
        self,
        prompt: str | Sequence[int],
        sampling: SamplingOptions,
        *,
        grammar: str | None = None,
    ) -> Generation:
        """Start generating; the returned Generation streams text as it is sampled."""
        out: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        cancel = threading.Event()

        def job() -> None:
            try:
                tokens = self._tokenize(prompt) if isinstance(prompt, str) else list(prompt)
                self._generate(tokens, sampling, grammar, cancel, out)
            except BaseException as exc:
                out.put(("error", exc))

        self._worker.submit(self._tracked(job))
        return Generation(out, cancel)

    def embed(self, text: str) -> list[float]:
        """Mean-pooled, L2-normalised embedding of `text` from the last layer."""
        return self._call(lambda: self._embed(text))

    def _embed(self, text: str) -> list[float]:
        import llama_cpp
        import numpy as np

        llm = self._llm
        tokens = self._tokenize(text)
        if len(tokens) >= self.load_options.n_ctx:
            raise PromptTooLongError(len(tokens), self.load_options.n_ctx)
        ctx = llm.ctx
        n_embd = llm.n_embd()
        llama_cpp.llama_set_embeddings(ctx, True)
        try:
            llm.reset()
            llm._ctx.kv_cache_clear()
            rows = []
            for i in range(0, len(tokens), llm.n_batch):
                batch = tokens[i : i + llm.n_batch]
                llm._batch.set_batch(batch=batch, n_past=i, logits_all=True)
                llm._ctx.decode(llm._batch)
                for j in range(len(batch)):
                    ptr = llama_cpp.llama_get_embeddings_ith(ctx, j)
                    rows.append(np.ctypeslib.as_array(ptr, shape=(n_embd,)).copy())
        finally:
            llama_cpp.llama_set_embeddings(ctx, False)
            llm.reset()
            llm._ctx.kv_cache_clear()
        vec = np.mean(rows, axis=0) if rows else np.zeros(n_embd, dtype=np.float32)
        norm = float(np.linalg.norm(vec))
        return [float(x) for x in (vec / norm if norm > 0 else vec)]
