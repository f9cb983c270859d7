"""The one module that drives llama.cpp: a loaded model serving one or more sequences.

Built on llama-cpp-python's low-level bindings (`llama_cpp.llama_*`), never on
its `Llama` class. Every llama.cpp call for a loaded model — load and free
included — runs on one dedicated thread: with the OpenMP build, decoding from a
different OS thread than before is 1.5–16× slower (OpenMP's thread team
belongs to the calling thread). `llama_threads` records every thread that ever
ran llama code, so tests can prove the rule holds.

That thread runs a step loop. Between steps it takes new work from a FIFO
inbox: generations (admitted into one of `n_seq_max` sequence slots; beyond
that they wait in order) and calls (tokenize, embed, …). Each step builds ONE
`llama_batch` holding the next token of every decoding sequence plus a bounded
chunk of pending prompt tokens (a long prompt never stalls running streams),
calls `llama_decode` once, samples every sequence that produced logits with
its own sampler chain and streams the text to its `Generation`. Cancelling
only sets a flag the loop checks at the start of every step, so the slot is
free within one step; nothing else (not a signal handler, not a client
thread) calls llama.cpp.

Sequences get the full `num_ctx` each: the context is sized
`n_ctx × n_seq_max` as one KV stream per sequence (`kv_unified` off). A
unified cache would let sequences share cells, but the attention span then
covers every sequence's cells and greedy output would depend on what else is
in the batch; with one stream per sequence and flash attention off, a
sequence's output is the same alone or batched.

Prompt cache: each slot keeps the KV cells of its last sequence. A new prompt
goes to the idle slot holding the longest common prefix, and only the rest is
decoded (a chat re-sends its history every turn). A prefix held by a *busy*
sequence is copied with `llama_memory_seq_cp` (a whole-stream copy between KV
streams, then trimmed) when it saves enough decoding.

Embeddings use a second context on the same weights, created on first use, so
they never touch a chat's KV cells.

Images (a vision model: the weights plus a projector, loaded with libmtmd through
`llama_cpp.mtmd_cpp`): the prompt marks each image with `MEDIA_MARKER`; libmtmd splits
it into text chunks and image chunks. Text chunks ride the shared batch as any prompt.
Decoding the image files and libmtmd's preprocessing (resizing to the encoder's
input: tens of ms for a photo) happen on a second thread, before the request joins the
inbox: no ggml graph runs there, and the step loop never waits for a JPEG decoder.
When a sequence reaches an image chunk, the step first encodes it with the projector and
decodes its embeddings for that sequence alone (its own `llama_batch` of embeddings, in
n_batch pieces, at the sequence's next positions), then builds the shared batch as usual:
at most one image per step, so a running stream waits for at most one encode. In the KV
bookkeeping an image is a run of negative placeholder "tokens", unique to that image, so
a prefix never matches across an image: only the text before a prompt's first image is
ever reused.
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import itertools
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from mfc.runtime.llama_log import LLAMA_LOG, reason
from mfc.runtime.media import MEDIA_MARKER, ImageError, decode_image, image_size
from mfc.runtime.model import Adapter
from mfc.runtime.options import LoadOptions, SamplingOptions
from mfc.runtime.stats import Stats
from mfc.runtime.stream import TextStream

T = TypeVar("T")

DEFAULT_SEED = 0xFFFFFFFF  # llama.cpp: pick a random seed
# Copy a busy sequence's KV stream only when it saves at least this many tokens of
# decoding (the copy moves the whole stream: n_ctx cells of every layer).
MIN_COPY_TOKENS = 32
MAX_TOP_LOGPROBS = 20  # Ollama's and OpenAI's limit


# `kv_cache_type` → ggml type id (llama-cpp-python binds these as GGML_TYPE_* constants).
_KV_TYPES = {
    "f32": 0,
    "f16": 1,
    "q4_0": 2,
    "q4_1": 3,
    "q5_0": 6,
    "q5_1": 7,
    "q8_0": 8,
    "iq4_nl": 20,
}


class EngineError(RuntimeError):
    """llama.cpp refused something (a model or adapter that will not load, a failed decode)."""


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


@dataclass(frozen=True, slots=True)
class Counters:
    """What the step loop has done (a snapshot; `Engine.counters`)."""

    steps: int = 0  # steps that called llama_decode
    decode_calls: int = 0  # llama_decode calls (generation context)
    tokens_decoded: int = 0  # tokens in those batches (prompt + generated)
    max_sequences_in_decode: int = 0  # most distinct sequences in one llama_decode
    prompt_tokens_reused: int = 0  # prompt tokens whose KV cells a cached prefix supplied
    prefix_copies: int = 0  # prefixes copied from a busy sequence (llama_memory_seq_cp)
    generations: int = 0  # generations finished (any reason)
    decode_ns: int = 0  # time inside llama_decode
    step_ns: int = 0  # time in whole steps (batch building + decode + sampling + delivery)
    images_encoded: int = 0  # images the projector encoded (mtmd_encode_chunk)
    image_tokens: int = 0  # embeddings those images put into the KV cells
    image_encode_ns: int = 0  # time inside mtmd_encode_chunk
    image_decode_ns: int = 0  # time decoding image embeddings (their own llama_decode calls)
    max_image_embeddings_in_step: int = 0  # most image embeddings one step decoded (<= n_batch)


@dataclass
class Generation:
    """One streaming answer: iterate for text chunks; `stats` and `text` once done.

    Closing the iterator early (or Ctrl-C while waiting) cancels the generation
    and waits until the engine has let go of it (at most one step), so the
    engine is immediately ready for the next request.
    """

    _chunks: queue.SimpleQueue[tuple[str, Any]]
    cancel_event: threading.Event
    text: str = ""
    stats: Stats | None = None
    warnings: list[str] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)  # prompt + answer (Ollama's `context`)
    # With ``logprobs=True``: one Ollama Logprob dict per token of `text` (`logprob_entry`)
    logprobs: list[dict[str, Any]] = field(default_factory=list)
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
                elif kind == "tokens":
                    self.tokens = value
                elif kind == "logprobs":  # the tokens of the text item that follows
                    self.logprobs.extend(value)
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
        """Stop at the next step and wait until the engine has let go of it.

        The answer counts as cancelled even if the engine had already finished:
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

    @property
    def done(self) -> bool:
        return self._done

    def result(self) -> str:
        """Run to the end (no streaming) and return the whole text."""
        for _ in self:
            pass
        return self.text


class Sink(Protocol):
    """Where a generation's ``(kind, value)`` items go: a queue, or anything with ``put``."""

    def put(self, item: tuple[str, Any], /) -> None: ...


@dataclass(eq=False)
class _Request:
    prompt: str | list[int]
    sampling: SamplingOptions
    grammar: str | None
    out: Sink
    cancel: threading.Event
    submitted_ns: int
    top_logprobs: int = -1  # -1: no logprobs; else how many alternatives per token
    images: tuple[bytes, ...] = ()  # encoded image bytes, one per MEDIA_MARKER in `prompt`
    # set by the image thread: (tokens, mtmd chunks, image chunks), or why it failed
    prepared: tuple[list[int], Any, list[_Media]] | None = None
    error: Exception | None = None


@dataclass(eq=False)
class _Media:
    """An image chunk of a slot's prompt: `n` embeddings at prompt index `start`."""

    start: int
    n: int
    chunk: Any  # mtmd_input_chunk*, owned by the slot's mtmd_input_chunks
    placeholder: int  # the negative "token" standing for it in `prompt` and `cached`
    done: int = 0  # embeddings decoded so far (one `num_batch` piece a step)
    embd: Any = None  # the encoded embeddings (a ctypes float array) until all are decoded
    non_causal: bool = False


@dataclass(eq=False)
class _Slot:
    """One sequence of the context: its KV cells (`cached`, token i at position i)
    and, while busy, the request it serves."""

    seq_id: int
    cached: list[int] = field(default_factory=list)
    last_used: int = 0
    req: _Request | None = None
    prompt: list[int] = field(default_factory=list)
    fed: int = 0  # prompt tokens in the KV cells (reused or decoded)
    reused: int = 0
    next_token: int | None = None  # sampled, to be decoded at the next step
    sampler: Any = None
    grammar: Any = None  # the grammar sampler, outside the chain (see `_sample_constrained`)
    logprobs: list[dict[str, Any]] = field(default_factory=list)  # for text not yet released
    stream: TextStream | None = None
    generated: int = 0
    limit: int = -1
    start_ns: int = 0
    first_ns: int = 0
    media: list[_Media] = field(default_factory=list)  # image chunks not yet decoded, in order
    chunks: Any = None  # the prompt's mtmd_input_chunks (freed when the request ends)
    has_media: bool = False  # an image is in the KV cells (no context shift)


class _Pieces:
    """token -> bytes with one reusable buffer."""

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


_backend_ready = False


class Engine:
    """A loaded model (weights + adapters + context) driven from its own thread.

    `generate` may be called from any thread and any number of times at once:
    up to `n_seq_max` generations decode together, later ones wait their turn.
    """

    def __init__(
        self,
        model_path: Path,
        load: LoadOptions,
        adapters: Sequence[Adapter] = (),
        *,
        n_seq_max: int = 1,
        grammar_fast_path: bool = True,
        projector: Path | None = None,
    ):
        """``grammar_fast_path=False`` applies a grammar to every candidate at every token
        (the reference `bench/structured.py` and the tests compare the fast path with).
        ``projector``: a vision projector (mmproj GGUF) for the model; images then work."""
        if n_seq_max < 1:
            raise ValueError("n_seq_max must be at least 1")
        self.model_path = Path(model_path)
        self.projector = Path(projector) if projector is not None else None
        self.grammar_fast_path = grammar_fast_path
        self.load_options = load
        self.adapters = tuple(adapters)
        self.n_seq_max = n_seq_max
        self.llama_threads: set[int] = set()
        self.load_duration_ns = 0
        # plain ints, updated on the engine thread (dataclasses.replace cost ~30 µs a step)
        self._tally = dataclasses.asdict(Counters())
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._waiting: collections.deque[_Request] = collections.deque()
        self._slots = [_Slot(i) for i in range(n_seq_max)]
        self._busy: list[_Slot] = []  # slots serving a request, in admission order
        self._tick = 0
        self._outbox: list[tuple[Sink, tuple[str, Any]]] = []
        self._closed = False
        self._stopping = False
        # llama.cpp handles, owned by the engine thread
        self._model: Any = None
        self._ctx: Any = None
        self._mem: Any = None
        self._vocab: Any = None
        self._batch: Any = None
        self._adapter_handles: list[Any] = []
        self._ectx: Any = None  # embeddings context, made on first use
        self._ebatch: Any = None
        self._cand: Any = None  # candidate buffers for constrained sampling, made on first use
        self._mctx: Any = None  # mtmd_context (the projector)
        self._ibatch: Any = None  # embeddings batch for images, made on first use
        self._step_image_embd = 0  # image embeddings decoded in the current step
        self._vision = False
        self._placeholders = itertools.count(-1, -1)  # one negative "token" per image
        self._prep: threading.Thread | None = None  # decodes and splits image requests
        self._prep_inbox: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._prep_lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, name=f"llama:{self.model_path.name}", daemon=True
        )
        self._thread.start()
        try:
            self._call(self._load)
        except BaseException:
            self._inbox.put(("stop", None))
            self._thread.join()
            self._closed = True
            raise

    # -- public API (any thread) ------------------------------------------------

    @property
    def n_ctx(self) -> int:
        """Tokens each sequence may hold (num_ctx)."""
        return self.load_options.n_ctx

    @property
    def supports_vision(self) -> bool:
        """A projector with a vision encoder is loaded: `generate` takes images."""
        return self._vision

    @property
    def worker_ident(self) -> int | None:
        return self._thread.ident

    @property
    def counters(self) -> Counters:
        """A snapshot of the step loop's counts."""
        return Counters(**self._tally)

    @property
    def running(self) -> int:
        """Sequences decoding now (at most `n_seq_max`)."""
        return len(self._busy)

    @property
    def waiting(self) -> int:
        """Generations queued for a free slot (approximate while requests arrive)."""
        return len(self._waiting) + self._inbox.qsize()

    def tokenize(self, text: str) -> list[int]:
        """Tokens exactly as `generate` would feed them (BOS per the model, specials parsed)."""
        return self._call(lambda: self._tokenize(text))

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self._call(lambda: self._detokenize(list(tokens)))

    def count_tokens(self, prompt: str, images: Sequence[bytes] = ()) -> int:
        """Positions `generate(prompt, images=images)` would fill before the answer: text
        tokens plus each image's embeddings (counted from the images' sizes, not decoded).
        EngineError for what `generate` would refuse (marker count, no projector, …)."""
        if not images:
            return len(self.tokenize(prompt))
        return self._call(lambda: self._count_media_tokens(prompt, tuple(images)))

    def generate(
        self,
        prompt: str | Sequence[int],
        sampling: SamplingOptions,
        *,
        grammar: str | None = None,
        out: Sink | None = None,
        logprobs: bool = False,
        top_logprobs: int = 0,
        images: Sequence[bytes] = (),
    ) -> Generation:
        """Queue a generation; the returned Generation streams text as it is sampled.

        ``images``: encoded image bytes (PNG, JPEG, …), one for each `MEDIA_MARKER` in
        ``prompt`` (a string then), in order. They are decoded and encoded on the engine
        thread; a bad image, a marker count that does not match or a model without a
        projector fails this generation (an EngineError from the Generation), nothing else.

        ``grammar`` (GBNF) constrains the tokens. ``logprobs`` asks for each generated
        token's log-probability and its ``top_logprobs`` (0..20) most likely alternatives,
        as Ollama reports them (`logprob_entry`); they arrive as a ``("logprobs", [...])``
        item right before the ``("text", …)`` item holding those tokens' text.

        With ``out``, the ``(kind, value)`` items the Generation would read go to
        ``out.put`` instead (on the engine thread, in step order), and the Generation
        is only a handle to cancel it. `mfc serve`'s runner passes one shared queue
        for all its generations, so one thread wakes per step instead of one per
        stream: on 2 cores every extra wake-up during ``llama_decode`` preempts a
        decode thread, and the whole step waits for it at ggml's barrier.
        """
        if self._closed:
            raise EngineError("the engine is closed")
        if not 0 <= top_logprobs <= MAX_TOP_LOGPROBS:
            raise ValueError(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}")
        chunks: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        cancel = threading.Event()
        tokens_or_text = prompt if isinstance(prompt, str) else list(prompt)
        sink: Sink = chunks if out is None else out
        req = _Request(tokens_or_text, sampling, grammar, sink, cancel, time.perf_counter_ns())
        if logprobs or top_logprobs:
            req.top_logprobs = top_logprobs
        if images:
            req.images = tuple(bytes(image) for image in images)
            self._prepare(req)
        else:
            self._inbox.put(("generate", req))
        return Generation(chunks, cancel)

    def embed(self, text: str) -> list[float]:
        """Mean-pooled, L2-normalised embedding of `text` from the last layer."""
        return self._call(lambda: self._embed(text))

    def close(self) -> None:
        """Cancel what is running, fail what waits, free llama.cpp's memory."""
        if self._closed:
            return
        self._closed = True
        self._inbox.put(("stop", None))
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the engine thread --------------------------------------------------------

    def _call(self, fn: Callable[[], T]) -> T:
        if threading.current_thread() is self._thread:
            return fn()
        if self._closed or not self._thread.is_alive():
            raise EngineError("the engine is closed")
        fut: Future[T] = Future()
        self._inbox.put(("call", (fn, fut)))
        return fut.result()

    def _run(self) -> None:
        # Ctrl-C must reach the main thread: a SIGINT the kernel hands to this
        # thread (or to the OpenMP threads it spawns, which inherit the mask)
        # would only be noticed by the main thread at its next wake-up, e.g. a
        # keystroke at the REPL prompt.
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        self.llama_threads.add(threading.get_ident())
        try:
            while not self._stopping:
                if not self._busy and not self._waiting:
                    self._take_inbox(block=True)  # idle: sleep until work arrives
                elif not self._inbox.empty():
                    self._take_inbox(block=False)
                if self._stopping:
                    break
                try:
                    if self._waiting:
                        self._admit()
                    if self._busy:
                        self._step()
                except Exception as exc:  # a bug here must not leave callers waiting forever
                    self._fail_running(exc)
        finally:
            self._shutdown()

    def _fail_running(self, exc: Exception) -> None:
        import llama_cpp

        for slot in list(self._busy):
            llama_cpp.llama_memory_seq_rm(self._mem, slot.seq_id, -1, -1)
            slot.cached = []
            self._finish(slot, "error", exc)

    def _take_inbox(self, *, block: bool) -> None:
        if block:
            self._flush()
        while True:
            try:
                kind, item = self._inbox.get() if block else self._inbox.get_nowait()
            except queue.Empty:
                return
            block = False
            if kind == "stop":
                self._stopping = True
                return
            if kind == "generate":
                self._waiting.append(item)
            else:  # "call": runs between steps
                fn, fut = item
                self._flush()
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn())
                    except BaseException as exc:
                        fut.set_exception(exc)

    def _shutdown(self) -> None:
        for slot in list(self._busy):
            self._finish(slot, "cancel")
        while self._waiting:
            req = self._waiting.popleft()
            self._drop_prepared(req)
            req.out.put(("error", EngineError("the engine was closed")))
        self._stop_prep()  # before the inbox is drained: it puts requests there
        while True:  # anything that arrived after the stop
            try:
                kind, item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if kind == "generate":
                self._drop_prepared(item)
                item.out.put(("error", EngineError("the engine was closed")))
            elif kind == "call":
                item[1].set_exception(EngineError("the engine was closed"))
        self._flush()
        self._free()

    # -- load / free ----------------------------------------------------------------

    def _load(self) -> None:
        import llama_cpp

        global _backend_ready
        LLAMA_LOG.install()
        if not _backend_ready:
            llama_cpp.llama_backend_init()
            _backend_ready = True
        start = time.perf_counter_ns()
        o = self.load_options
        mark = LLAMA_LOG.mark()
        if not self.model_path.is_file():
            raise EngineError(f"llama.cpp could not load {self.model_path}: no such file")
        mp = llama_cpp.llama_model_default_params()
        mp.n_gpu_layers = o.n_gpu_layers
        mp.main_gpu = o.main_gpu
        mp.load_mode = (
            llama_cpp.LLAMA_LOAD_MODE_MMAP if o.use_mmap else llama_cpp.LLAMA_LOAD_MODE_NONE
        )
        model = llama_cpp.llama_model_load_from_file(str(self.model_path).encode(), mp)
        if not model:
            raise EngineError(
                f"llama.cpp could not load {self.model_path}: {reason(LLAMA_LOG.since(mark))}"
            )
        self._model = model
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self._ctx = self._new_context(embeddings=False)
        self._mem = llama_cpp.llama_get_memory(self._ctx)
        self._load_adapters()
        self._attach_adapters(self._ctx)
        self._batch = llama_cpp.llama_batch_init(self._batch_cap, 0, 1)
        self._init_batch_views()
        self._pieces = _Pieces(self._vocab)
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self._bos = llama_cpp.llama_vocab_bos(self._vocab)
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self._bos_text = (
            llama_cpp.llama_vocab_get_text(self._vocab, self._bos).decode("utf-8", "replace")
            if self._bos >= 0
            else ""
        )
        if self.projector is not None:
            self._load_projector(self.projector)
        self.load_duration_ns = time.perf_counter_ns() - start

    def _load_projector(self, path: Path) -> None:
        """libmtmd's context for the projector, on the engine thread, after the model.

        With libmtmd's warm-up: it only builds the encoder's graph and reserves its memory (no
        compute), so a projector whose graph cannot be built (a tensor it needs is missing)
        fails while loading, in the runner, rather than under the first image while other
        streams decode. The CPU only, like the model.
        """
        import llama_cpp
        from llama_cpp import mtmd_cpp

        if not path.is_file():
            raise EngineError(f"llama.cpp could not load the projector {path}: no such file")
        LLAMA_LOG.install_mtmd()
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = False
        params.print_timings = False
        params.n_threads = self._threads()[1]
        params.media_marker = MEDIA_MARKER.encode()
        params.warmup = True
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if self.load_options.flash_attn
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        mark = LLAMA_LOG.mark()
        ctx = mtmd_cpp.mtmd_init_from_file(str(path).encode(), self._model, params)
        if not ctx:
            raise EngineError(
                f"llama.cpp could not load the projector {path} (is it a vision projector "
                f"made for {self.model_path.name}?): {reason(LLAMA_LOG.since(mark))}"
            )
        self._mctx = ctx
        self._vision = bool(mtmd_cpp.mtmd_support_vision(ctx))

    @property
    def _batch_cap(self) -> int:
        return max(self.load_options.n_batch, self.n_seq_max)

    def _threads(self) -> tuple[int, int]:
        # llama-cpp-python's Llama defaults: half the cores to generate, all to batch.
        n = self.load_options.n_threads
        cpus = os.cpu_count() or 1
        return (n, n) if n else (max(cpus // 2, 1), cpus)

    def _new_context(self, *, embeddings: bool) -> Any:
        import llama_cpp

        o = self.load_options
        cp = llama_cpp.llama_context_default_params()
        n_seq = 1 if embeddings else self.n_seq_max
        cp.n_ctx = o.n_ctx * n_seq
        cp.n_batch = self._batch_cap if not embeddings else o.n_batch
        cp.n_ubatch = cp.n_batch
        cp.n_seq_max = n_seq
        cp.kv_unified = False  # one KV stream per sequence: each gets all of num_ctx
        cp.n_threads, cp.n_threads_batch = self._threads()
        cp.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if o.flash_attn
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        cp.no_perf = True
        if o.kv_cache_type != "f16":
            kv_type = _KV_TYPES[o.kv_cache_type]
            cp.type_k = kv_type
            cp.type_v = kv_type
        if embeddings:
            cp.embeddings = True
            cp.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_NONE  # per-token rows, pooled here
        mark = LLAMA_LOG.mark()
        ctx = llama_cpp.llama_init_from_model(self._model, cp)
        if not ctx:
            raise EngineError(
                f"llama.cpp could not create a context for {self.model_path} "
                f"(num_ctx {o.n_ctx} × {n_seq} sequences): {reason(LLAMA_LOG.since(mark))}"
            )
        return ctx

    def _load_adapters(self) -> None:
        import llama_cpp

        for adapter in self.adapters:
            mark = LLAMA_LOG.mark()
            handle = llama_cpp.llama_adapter_lora_init(self._model, str(adapter.path).encode())
            if not handle:
                raise EngineError(
                    f"llama.cpp could not load the LoRA adapter {adapter.path} "
                    "(is it a GGUF LoRA made for this base model?): "
                    f"{reason(LLAMA_LOG.since(mark))}"
                )
            self._adapter_handles.append(handle)  # freed together with the model

    def _attach_adapters(self, ctx: Any) -> None:
        import llama_cpp

        n = len(self._adapter_handles)
        if not n:
            return
        array = (llama_cpp.llama_adapter_lora_p_ctypes * n)(*self._adapter_handles)
        scales = (ctypes.c_float * n)(*(a.scale for a in self.adapters))
        mark = LLAMA_LOG.mark()
        if llama_cpp.llama_set_adapters_lora(ctx, array, n, scales) != 0:
            raise EngineError(
                f"llama.cpp refused to attach the LoRA adapters: {reason(LLAMA_LOG.since(mark))}"
            )

    def _free(self) -> None:
        import llama_cpp

        for slot in self._slots:
            if slot.sampler:
                llama_cpp.llama_sampler_free(slot.sampler)
                slot.sampler = None
            if slot.grammar:
                llama_cpp.llama_sampler_free(slot.grammar)
                slot.grammar = None
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self._ebatch is not None:
            llama_cpp.llama_batch_free(self._ebatch)
            self._ebatch = None
        if self._ectx:
            llama_cpp.llama_free(self._ectx)
            self._ectx = None
        for slot in self._slots:
            self._free_media(slot)
        if self._ibatch is not None:
            llama_cpp.llama_batch_free(self._ibatch)
            self._ibatch = None
        if self._mctx:
            from llama_cpp import mtmd_cpp

            mtmd_cpp.mtmd_free(self._mctx)  # before the model it reads the vocabulary of
            self._mctx = None
            self._vision = False
        if self._ctx:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            llama_cpp.llama_model_free(self._model)  # frees its LoRA adapters too
            self._model = None
        self._adapter_handles.clear()

    # -- tokens ------------------------------------------------------------------------

    def _tokenize(self, text: str) -> list[int]:
        import llama_cpp

        # A template that writes `{{ bos_token }}` already has it: adding the
        # tokenizer's own would give two (and a llama.cpp warning).
        add_bos = self._add_bos and not (self._bos >= 0 and text.startswith(self._bos_text))
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (llama_cpp.llama_token * cap)()
        n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buf, cap, add_bos, True)
        if n < 0:
            cap = -n
            buf = (llama_cpp.llama_token * cap)()
            n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buf, cap, add_bos, True)
            if n < 0:
                raise EngineError(f"llama.cpp could not tokenize the prompt ({n})")
        return list(buf[:n])

    def _detokenize(self, tokens: list[int]) -> str:
        data = b"".join(self._pieces(t) for t in tokens)
        # llama-style vocabularies put a space before the first word after BOS
        if tokens and tokens[0] == self._bos and data.startswith(b" "):
            data = data[1:]
        return data.decode("utf-8", errors="replace")

    # -- admission ---------------------------------------------------------------------

    def _admit(self) -> None:
        """Move waiting requests into free slots, in order; drop cancelled ones."""
        if any(r.cancel.is_set() for r in self._waiting):
            for req in [r for r in self._waiting if r.cancel.is_set()]:
                self._waiting.remove(req)
                self._drop_prepared(req)
                req.out.put(("done", _empty_stats(req, "cancel")))
        while self._waiting:
            free = [s for s in self._slots if s.req is None]
            if not free:
                return
            req = self._waiting.popleft()
            try:
                self._start(req, free)
            except Exception as exc:
                req.out.put(("error", exc))

    def _start(self, req: _Request, free: list[_Slot]) -> None:
        start = time.perf_counter_ns()
        chunks = None
        media: list[_Media] = []
        if req.error is not None:
            raise req.error
        if req.prepared is not None:
            (tokens, chunks, media), req.prepared = req.prepared, None
        elif req.images:
            tokens, chunks, media = self._tokenize_media(req.prompt, req.images)
        else:
            tokens = self._tokenize(req.prompt) if isinstance(req.prompt, str) else req.prompt
        try:
            self._place(req, tokens, free, start, chunks, media)
        except BaseException:
            if chunks is not None and all(s.chunks is not chunks for s in self._slots):
                from llama_cpp import mtmd_cpp

                mtmd_cpp.mtmd_input_chunks_free(chunks)
            raise

    def _place(
        self,
        req: _Request,
        tokens: list[int],
        free: list[_Slot],
        start: int,
        chunks: Any,
        media: list[_Media],
    ) -> None:
        import llama_cpp

        n_ctx = self.n_ctx
        if len(tokens) >= n_ctx:
            raise PromptTooLongError(len(tokens), n_ctx)
        if not tokens:
            raise EngineError("the prompt is empty (no tokens to start from)")
        # The free slot holding the longest prefix; a shared BOS alone is no reason to
        # overwrite another conversation's cache, so then the least recently used.
        slot = max(free, key=lambda s: (_useful(_common(s.cached, tokens)), -s.last_used))
        reuse = _common(slot.cached, tokens)
        # A prefix held by a busy sequence (a shared system prompt …) is copied.
        donors = [s for s in self._slots if s.req is not None and s is not slot]
        if donors:
            donor = max(donors, key=lambda s: _common(s.cached, tokens))
            shared = _common(donor.cached, tokens)
            if shared >= reuse + MIN_COPY_TOKENS:
                mem = self._mem
                llama_cpp.llama_memory_seq_rm(mem, slot.seq_id, -1, -1)
                # Between KV streams only a whole-stream copy exists; trim it after.
                llama_cpp.llama_memory_seq_cp(mem, donor.seq_id, slot.seq_id, -1, -1)
                llama_cpp.llama_memory_seq_rm(mem, slot.seq_id, shared, -1)
                slot.cached = donor.cached[:shared]
                reuse = shared
                self._count(prefix_copies=1)
        if reuse == len(tokens):
            reuse -= 1  # the last prompt token is decoded again: its logits start the answer
        if reuse > 0 and llama_cpp.llama_memory_seq_rm(self._mem, slot.seq_id, reuse, -1):
            del slot.cached[reuse:]
        else:
            llama_cpp.llama_memory_seq_rm(self._mem, slot.seq_id, -1, -1)
            slot.cached = []
            reuse = 0
        s = req.sampling
        slot.sampler, slot.grammar = self._sampler(s, req.grammar)
        slot.logprobs = []
        slot.req = req
        self._busy.append(slot)
        slot.prompt = tokens
        slot.fed = slot.reused = reuse
        slot.next_token = None
        slot.stream = TextStream(s.stop)
        slot.generated = 0
        slot.limit = n_ctx if s.num_predict == -2 else s.num_predict
        slot.start_ns = start
        slot.first_ns = 0
        slot.chunks = chunks
        slot.media = media
        slot.has_media = False
        self._count(prompt_tokens_reused=reuse)

    # -- images ------------------------------------------------------------------------

    def _prepare(self, req: _Request) -> None:
        """Hand an image request to the image thread (started on first use)."""
        with self._prep_lock:
            if self._prep is None:
                self._prep = threading.Thread(
                    target=self._run_prep, name=f"images:{self.model_path.name}", daemon=True
                )
                self._prep.start()
        self._prep_inbox.put(req)

    def _run_prep(self) -> None:
        """Decode each request's images and split its prompt, then queue it for a slot.

        Only Pillow, libmtmd's tokenizer (text tokens, thread-safe per mtmd.h) and its image
        preprocessing run here — plain CPU loops, no ggml graph — while the engine thread
        keeps stepping. The projector and the model are freed only after this thread ends.
        """
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        while True:
            req = self._prep_inbox.get()
            if req is None:
                return
            if not req.cancel.is_set():
                try:
                    req.prepared = self._tokenize_media(req.prompt, req.images)
                except Exception as exc:
                    req.error = exc
            self._inbox.put(("generate", req))

    def _stop_prep(self) -> None:
        """End the image thread (engine thread, at shutdown); fail what it still held."""
        if self._prep is not None:
            self._prep_inbox.put(None)
            self._prep.join()
            self._prep = None
        while True:
            try:
                req = self._prep_inbox.get_nowait()
            except queue.Empty:
                return
            if req is not None:
                req.out.put(("error", EngineError("the engine was closed")))

    def _drop_prepared(self, req: _Request) -> None:
        """Free the chunks of a prepared request that will never run."""
        if req.prepared is not None:
            from llama_cpp import mtmd_cpp

            mtmd_cpp.mtmd_input_chunks_free(req.prepared[1])
            req.prepared = None

    def _check_media(self, prompt: str | list[int], images: tuple[bytes, ...]) -> str:
        """The prompt text, if these images can go with it; else the EngineError why not."""
        if self._mctx is None or not self._vision:
            raise EngineError(
                f"{self.model_path.name} does not support images: "
                + ("its projector has no vision encoder" if self._mctx else "it has no projector")
            )
        if not isinstance(prompt, str):
            raise EngineError("images need a text prompt with one image marker each, not tokens")
        markers = prompt.count(MEDIA_MARKER)
        if markers != len(images):
            raise EngineError(
                f"the prompt has {markers} image marker{'s' * (markers != 1)} but "
                f"{len(images)} image{'s' * (len(images) != 1)} came with it"
            )
        from llama_cpp import mtmd_cpp

        if mtmd_cpp.mtmd_decode_use_mrope(self._mctx):
            raise EngineError(
                "this model's projector places image embeddings with M-RoPE (Qwen-VL style "
                "positions), which mfc's engine does not support yet"
            )
        return prompt

    def _mtmd_tokenize(self, text: str, bitmaps: list[Any]) -> Any:
        """libmtmd's chunks for `text` (BOS as `_tokenize` adds it); the caller frees them."""
        from llama_cpp import mtmd_cpp

        add_bos = self._add_bos and not (self._bos >= 0 and text.startswith(self._bos_text))
        data = text.encode("utf-8")
        inp = mtmd_cpp.mtmd_input_text(data, len(data), add_bos, True)
        array = (mtmd_cpp.mtmd_bitmap_p_ctypes * max(len(bitmaps), 1))(*bitmaps)
        chunks = mtmd_cpp.mtmd_input_chunks_init()
        mark = LLAMA_LOG.mark()
        rc = mtmd_cpp.mtmd_tokenize(self._mctx, chunks, ctypes.byref(inp), array, len(bitmaps))
        if rc != 0:
            mtmd_cpp.mtmd_input_chunks_free(chunks)
            raise EngineError(
                f"the projector could not prepare the images (code {rc}): "
                f"{reason(LLAMA_LOG.since(mark))}"
            )
        return chunks

    def _chunks_of(
        self, text: str, images: tuple[bytes, ...], bitmap: Callable[[bytes], Any]
    ) -> Any:
        """`_mtmd_tokenize` with one libmtmd bitmap per image, made by ``bitmap(data)`` (a
        decoded image, or an empty one of its size for counting); the bitmaps are freed."""
        from llama_cpp import mtmd_cpp

        bitmaps = []
        try:
            for i, data in enumerate(images, 1):
                try:
                    made = bitmap(data)
                except ImageError as exc:
                    raise EngineError(f"image {i}: {exc}") from None
                if not made:
                    raise EngineError(f"image {i}: libmtmd could not take the bitmap")
                bitmaps.append(made)
            return self._mtmd_tokenize(text, bitmaps)
        finally:
            for made in bitmaps:
                mtmd_cpp.mtmd_bitmap_free(made)

    def _tokenize_media(
        self, prompt: str | list[int], images: tuple[bytes, ...]
    ) -> tuple[list[int], Any, list[_Media]]:
        """Decode the images, split the prompt into chunks: the prompt as tokens (each image a
        run of its own placeholder), the chunks (to free) and the image chunks."""
        from llama_cpp import mtmd_cpp

        def bitmap(data: bytes) -> Any:
            bm = decode_image(data)
            buf = (ctypes.c_uint8 * len(bm.rgb)).from_buffer_copy(bm.rgb)
            return mtmd_cpp.mtmd_bitmap_init(bm.width, bm.height, buf)

        chunks = self._chunks_of(self._check_media(prompt, images), images, bitmap)
        try:
            tokens, media = self._read_chunks(chunks)
        except BaseException:
            mtmd_cpp.mtmd_input_chunks_free(chunks)
            raise
        return tokens, chunks, media

    def _read_chunks(self, chunks: Any) -> tuple[list[int], list[_Media]]:
        from llama_cpp import mtmd_cpp

        tokens: list[int] = []
        media: list[_Media] = []
        n_batch = self.load_options.n_batch
        for i in range(mtmd_cpp.mtmd_input_chunks_size(chunks)):
            chunk = mtmd_cpp.mtmd_input_chunks_get(chunks, i)
            kind = mtmd_cpp.mtmd_input_chunk_get_type(chunk)
            if kind == mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t(0)
                ptr = mtmd_cpp.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                tokens.extend(ptr[: n.value] if n.value else ())
                continue
            if kind != mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                raise EngineError("the projector made a non-image chunk (audio is not supported)")
            n_tokens = int(mtmd_cpp.mtmd_input_chunk_get_n_tokens(chunk))
            if int(mtmd_cpp.mtmd_input_chunk_get_n_pos(chunk)) != n_tokens:
                raise EngineError("the projector's image positions differ from its embeddings")
            if n_tokens > n_batch and mtmd_cpp.mtmd_decode_use_non_causal(self._mctx, chunk):
                raise EngineError(
                    f"an image is {n_tokens} embeddings, which this model must decode in one "
                    f"batch, but num_batch is {n_batch}: raise num_batch to at least {n_tokens}"
                )
            placeholder = next(self._placeholders)
            media.append(_Media(len(tokens), n_tokens, chunk, placeholder))
            tokens.extend([placeholder] * n_tokens)
        return tokens, media

    def _count_media_tokens(self, prompt: str, images: tuple[bytes, ...]) -> int:
        """`count_tokens` with images: placeholder bitmaps of the images' sizes."""
        from llama_cpp import mtmd_cpp

        def bitmap(data: bytes) -> Any:
            width, height = image_size(data)
            return mtmd_cpp.mtmd_bitmap_init(width, height, None)

        chunks = self._chunks_of(self._check_media(prompt, images), images, bitmap)
        try:
            each = (
                mtmd_cpp.mtmd_input_chunks_get(chunks, i)
                for i in range(mtmd_cpp.mtmd_input_chunks_size(chunks))
            )
            return sum(int(mtmd_cpp.mtmd_input_chunk_get_n_tokens(chunk)) for chunk in each)
        finally:
            mtmd_cpp.mtmd_input_chunks_free(chunks)

    def _free_media(self, slot: _Slot) -> None:
        if slot.chunks is not None:
            from llama_cpp import mtmd_cpp

            mtmd_cpp.mtmd_input_chunks_free(slot.chunks)
            slot.chunks = None
        slot.media = []

    def _encode_image(self, slot: _Slot) -> None:
        """Encode the slot's next image (the vision tower) and keep its embeddings with the
        slot: `_decode_image_piece` feeds them to the text model over the next steps."""
        import llama_cpp
        from llama_cpp import mtmd_cpp

        m = slot.media[0]
        mctx = self._mctx
        tally = self._tally
        mark = LLAMA_LOG.mark()
        self._flush()  # the consumers run while the projector computes
        t0 = time.perf_counter_ns()
        rc = mtmd_cpp.mtmd_encode_chunk(mctx, m.chunk)
        tally["image_encode_ns"] += time.perf_counter_ns() - t0
        tally["images_encoded"] += 1
        if rc != 0:
            why = reason(LLAMA_LOG.since(mark))
            self._fail_slot(slot, f"the projector could not encode an image (code {rc}): {why}")
            return
        if self._ibatch is None:
            self._n_embd_inp = llama_cpp.llama_model_n_embd_inp(self._model)
            self._ibatch = llama_cpp.llama_batch_init(
                self.load_options.n_batch, self._n_embd_inp, 1
            )
        # The projector's output buffer is overwritten by the next encode (another slot's):
        # the slot keeps its own copy until every piece is decoded.
        n_floats = m.n * self._n_embd_inp
        m.embd = (ctypes.c_float * n_floats)()
        ctypes.memmove(m.embd, mtmd_cpp.mtmd_get_output_embd(mctx), n_floats * 4)
        m.non_causal = bool(mtmd_cpp.mtmd_decode_use_non_causal(mctx, m.chunk))
        self._decode_image_piece(slot)

    def _decode_image_piece(self, slot: _Slot) -> None:
        """Decode the next `num_batch` embeddings of the slot's encoded image for that
        sequence alone (a separate llama_decode: the shared batch holds token ids, an image
        holds vectors). One piece a step, so the other streams wait for one piece, as they
        do for one chunk of a long text prompt, not for the whole image."""
        import llama_cpp

        m = slot.media[0]
        tally = self._tally
        mark = LLAMA_LOG.mark()
        t0 = time.perf_counter_ns()
        batch = self._ibatch
        row_bytes = self._n_embd_inp * ctypes.sizeof(ctypes.c_float)
        src = ctypes.addressof(m.embd)
        dst = ctypes.cast(batch.embd, ctypes.c_void_p).value or 0
        seq = slot.seq_id
        p0 = len(slot.cached)
        off = m.done
        k = min(self.load_options.n_batch, m.n - off)
        final = off + k == m.n
        last = final and m.start + m.n == len(slot.prompt)  # the prompt ends with this image
        ctypes.memmove(dst, src + off * row_bytes, k * row_bytes)
        for j in range(k):
            batch.pos[j] = p0 + j
            batch.n_seq_id[j] = 1
            batch.seq_id[j][0] = seq
            batch.logits[j] = 0
        if last:
            batch.logits[k - 1] = 1
        batch.n_tokens = k
        if m.non_causal:
            llama_cpp.llama_set_causal_attn(self._ctx, False)
        try:
            rc = llama_cpp.llama_decode(self._ctx, batch)
        finally:
            if m.non_causal:
                llama_cpp.llama_set_causal_attn(self._ctx, True)
            tally["image_decode_ns"] += time.perf_counter_ns() - t0
        if rc != 0:
            self._fail_slot(
                slot,
                f"llama_decode failed (code {rc}) on an image's {k} embeddings: "
                f"{reason(LLAMA_LOG.since(mark))}",
            )
            return
        slot.cached.extend([m.placeholder] * k)
        slot.fed += k
        slot.has_media = True
        m.done += k
        self._step_image_embd += k
        if self._step_image_embd > tally["max_image_embeddings_in_step"]:
            tally["max_image_embeddings_in_step"] = self._step_image_embd
        if not final:
            return
        slot.media.pop(0)
        m.embd = None
        tally["image_tokens"] += m.n
        if last:
            slot.first_ns = time.perf_counter_ns()
            self._sample(slot, k - 1)

    def _fail_slot(self, slot: _Slot, message: str) -> None:
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(self._mem, slot.seq_id, -1, -1)
        slot.cached = []
        self._finish(slot, "error", EngineError(message))

    def _sampler(self, s: SamplingOptions, grammar: str | None) -> tuple[Any, Any]:
        """The sampler chain llama-cpp-python's `Llama` builds, from the same options, and
        the grammar sampler: in the chain (after the penalties) without the fast path, else
        apart, for `_sample_constrained`."""
        import llama_cpp

        g = None
        if grammar:
            mark = LLAMA_LOG.mark()
            g = llama_cpp.llama_sampler_init_grammar(self._vocab, grammar.encode(), b"root")
            if not g:
                why = reason(LLAMA_LOG.since(mark))
                raise EngineError(f"llama.cpp rejected the grammar: {why}")
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        add = llama_cpp.llama_sampler_chain_add
        last_n = self.n_ctx if s.repeat_last_n < 0 else s.repeat_last_n
        add(
            chain,
            llama_cpp.llama_sampler_init_penalties(
                self._n_vocab,
                last_n,
                s.repeat_penalty,
                s.frequency_penalty,
                s.presence_penalty,
            ),
        )
        if g is not None and not self.grammar_fast_path:
            add(chain, g)  # the chain owns (and frees) it now
            g = None
        seed = s.seed if s.seed >= 0 else DEFAULT_SEED
        if s.temperature < 0.0:
            add(chain, llama_cpp.llama_sampler_init_dist(seed))
        elif s.temperature == 0.0:
            add(chain, llama_cpp.llama_sampler_init_greedy())
        else:
            add(chain, llama_cpp.llama_sampler_init_top_k(s.top_k))
            add(chain, llama_cpp.llama_sampler_init_typical(s.typical_p, 1))
            add(chain, llama_cpp.llama_sampler_init_top_p(s.top_p, 1))
            add(chain, llama_cpp.llama_sampler_init_min_p(s.min_p, 1))
            add(chain, llama_cpp.llama_sampler_init_temp(s.temperature))
            add(chain, llama_cpp.llama_sampler_init_dist(seed))
        return chain, g

    # -- the step ----------------------------------------------------------------------

    def _init_batch_views(self) -> None:
        import numpy as np

        b = self._batch
        cap = self._batch_cap
        self._b_token = np.ctypeslib.as_array(b.token, shape=(cap,))
        self._b_pos = np.ctypeslib.as_array(b.pos, shape=(cap,))
        self._b_logits = np.ctypeslib.as_array(b.logits, shape=(cap,))
        np.ctypeslib.as_array(b.n_seq_id, shape=(cap,))[:] = 1
        self._b_seq = [-1] * cap  # what seq_id[i][0] holds: written only when it changes
        self._p_token, self._p_pos, self._p_logits, self._p_seq = b.token, b.pos, b.logits, b.seq_id

    def _set_seq(self, start: int, end: int, seq_id: int) -> None:
        rows = self._batch.seq_id
        known = self._b_seq
        for i in range(start, end):
            if known[i] != seq_id:
                rows[i][0] = seq_id
                known[i] = seq_id

    def _step(self) -> None:
        import llama_cpp

        # This runs once per token: kept lean (right after a decode has streamed the
        # weights through the CPU caches, every Python operation is slow).
        t_step = time.perf_counter_ns()
        for slot in [s for s in self._busy if s.req.cancel.is_set()]:  # type: ignore[union-attr]
            self._finish(slot, "cancel")  # cancelled sequences leave before the batch is built
        if self._mctx is not None:
            self._step_image_embd = 0
            # At most one image action a step, the oldest request's first: a piece of an image
            # being decoded, else encoding the next image (with its first piece).
            for slot in self._busy:
                if slot.media and slot.media[0].done:
                    self._decode_image_piece(slot)
                    break
            else:
                for slot in self._busy:
                    if slot.media and slot.fed == slot.media[0].start:
                        self._encode_image(slot)
                        break
        cap = self._batch_cap
        n = 0
        outputs: list[tuple[_Slot, int]] = []
        in_batch: list[_Slot] = []
        token_p, pos_p, logits_p, seq_p = self._p_token, self._p_pos, self._p_logits, self._p_seq
        known = self._b_seq
        # Decode rows in sequence-id order: with one KV stream per sequence, llama.cpp splits a
        # batch into one graph pass per run of consecutive ids (split_equal, sequential), and
        # every pass reads all the weights again — admission order cost 15-25% at 4-8 streams.
        for slot in sorted(self._busy, key=_seq_id):
            token = slot.next_token
            if token is None:
                continue
            token_p[n] = token
            pos_p[n] = len(slot.cached)
            logits_p[n] = 1
            if known[n] != slot.seq_id:
                seq_p[n][0] = known[n] = slot.seq_id
            slot.cached.append(token)
            slot.next_token = None
            outputs.append((slot, n))
            in_batch.append(slot)
            n += 1
        # Prompt chunks fill what is left, oldest request first (busy is in admission order).
        prefill = [s for s in self._busy if s.fed < len(s.prompt)]
        for slot in prefill:
            if n >= cap:
                break
            end = slot.media[0].start if slot.media else len(slot.prompt)
            if slot.fed >= end:
                continue  # waits for its image (a later step)
            chunk = slot.prompt[slot.fed : min(end, slot.fed + cap - n)]
            k = len(chunk)
            p0 = len(slot.cached)
            self._b_token[n : n + k] = chunk
            self._b_pos[n : n + k] = range(p0, p0 + k)
            self._b_logits[n : n + k] = 0
            self._set_seq(n, n + k, slot.seq_id)
            slot.cached.extend(chunk)
            slot.fed += k
            if slot.fed == len(slot.prompt):
                self._b_logits[n + k - 1] = 1
                outputs.append((slot, n + k - 1))
            in_batch.append(slot)
            n += k
        if n == 0:
            return
        self._batch.n_tokens = n
        mark = LLAMA_LOG.mark()
        self._flush()
        t_decode = time.perf_counter_ns()
        rc = llama_cpp.llama_decode(self._ctx, self._batch)
        now = time.perf_counter_ns()
        tally = self._tally
        tally["decode_ns"] += now - t_decode
        tally["steps"] += 1
        tally["decode_calls"] += 1
        tally["tokens_decoded"] += n
        if len(in_batch) > tally["max_sequences_in_decode"]:
            tally["max_sequences_in_decode"] = len(in_batch)
        if rc != 0:
            error = EngineError(
                f"llama_decode failed (code {rc}) on {n} tokens: {reason(LLAMA_LOG.since(mark))}"
            )
            for slot in in_batch:
                llama_cpp.llama_memory_seq_rm(self._mem, slot.seq_id, -1, -1)
                slot.cached = []
                self._finish(slot, "error", error)
            return
        for slot, row in outputs:
            if not slot.first_ns:
                slot.first_ns = now
            self._sample(slot, row)
        tally["step_ns"] += time.perf_counter_ns() - t_step

    def _sample(self, slot: _Slot, row: int) -> None:
        import llama_cpp

        req = slot.req
        assert req is not None and slot.stream is not None
        if slot.grammar is None:
            token = llama_cpp.llama_sampler_sample(slot.sampler, self._ctx, row)
        else:
            token = self._sample_constrained(slot, row)
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            self._finish(slot, "stop")
            return
        slot.generated += 1
        piece = self._pieces(token)
        if req.top_logprobs >= 0:  # after the EOG check: no entry for the end token (Ollama)
            slot.logprobs.append(self._logprob_entry(row, token, piece, req.top_logprobs))
        text = slot.stream.feed(piece)
        if slot.logprobs:
            self._send_logprobs(req, slot, text, final=slot.stream.stopped)
        if text:
            self._send(req, ("text", text))
        if slot.stream.stopped:
            self._finish(slot, "stop")
        elif req.cancel.is_set():
            self._finish(slot, "cancel")
        elif 0 <= slot.limit <= slot.generated:
            self._finish(slot, "length")
        elif len(slot.cached) >= self.n_ctx and (
            req.sampling.num_predict == -2 or not self._shift_context(slot)
        ):
            self._send(req, ("warning", f"the context window (num_ctx={self.n_ctx}) is full"))
            self._finish(slot, "length")
        else:
            slot.next_token = token

    def _sample_constrained(self, slot: _Slot, row: int) -> int:
        """Sample under a grammar the way llama.cpp's common sampler does (grammar_first off).

        Applying a grammar means matching every vocabulary entry against the grammar's
        parse stacks (32k-150k strings a token). Instead, sample from the unconstrained
        chain first, ask the grammar about that one token, and only if it is rejected apply
        the grammar to all candidates and sample again. Greedy picks the same token either
        way (the argmax, if allowed, is the argmax of the allowed); sampling draws from
        llama.cpp's own distribution (exact for plain temperature: rejection sampling).
        """
        import llama_cpp

        if not self.grammar_fast_path:
            return int(llama_cpp.llama_sampler_sample(slot.sampler, self._ctx, row))
        if self._cand is None:
            self._cand = _Candidates(self._n_vocab)
        cand = self._cand
        logits = llama_cpp.llama_get_logits_ith(self._ctx, row)
        token = cand.sample(slot.sampler, logits)
        if not cand.allowed(slot.grammar, token):
            cand.fill(logits)
            llama_cpp.llama_sampler_apply(slot.grammar, cand.ref)
            token = cand.sample(slot.sampler, None)
        if not llama_cpp.llama_vocab_is_eog(self._vocab, token):
            llama_cpp.llama_sampler_accept(slot.grammar, token)
        llama_cpp.llama_sampler_accept(slot.sampler, token)
        return token

    def _logprob_entry(self, row: int, token: int, piece: bytes, top: int) -> dict[str, Any]:
        """Ollama's Logprob for a sampled token: log-softmax of the model's raw logits.

        Ollama's runners (llamarunner's `CalculateLogprobs`, and llama-server's n_probs,
        which Ollama now forwards to) report the distribution *before* every sampler:
        no temperature, penalties, truncation or grammar. Only computed when asked.
        """
        import llama_cpp
        import numpy as np

        ptr = llama_cpp.llama_get_logits_ith(self._ctx, row)
        logits = np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).astype(np.float64)
        peak = logits.max()
        lse = peak + np.log(np.exp(logits - peak).sum())
        entry = logprob_entry(piece, float(logits[token] - lse))
        if top:
            best = np.argpartition(-logits, top - 1)[:top]
            best = best[np.lexsort((best, -logits[best]))]  # descending; ties by token id
            entry["top_logprobs"] = [
                logprob_entry(self._pieces(int(t)), float(logits[t] - lse)) for t in best
            ]
        return entry

    def _send_logprobs(self, req: _Request, slot: _Slot, text: str, *, final: bool) -> None:
        """Hand over the entries of the tokens whose text is released now (`text`).

        Tokens whose text is still held back (a split UTF-8 character, a possible stop
        string) wait for the piece that releases it. When the answer ends, entries of tokens
        swallowed by a stop string are dropped, as Ollama drops them.
        """
        entries = slot.logprobs
        if not text:
            if final:
                slot.logprobs = []
            return
        if slot.stream is not None and slot.stream.stopped:
            entries = _covering(entries, len(text))
        self._send(req, ("logprobs", entries))
        slot.logprobs = []

    def _shift_context(self, slot: _Slot) -> bool:
        """Make room as Ollama/llama.cpp do: keep the first `num_keep` tokens (plus
        BOS; all prompt tokens if negative), drop half of the rest, slide the tail."""
        import llama_cpp

        assert slot.req is not None
        if slot.has_media:
            return False  # an image's embeddings cannot be slid: the answer ends ("length")
        num_keep = slot.req.sampling.num_keep
        cached = slot.cached
        n = len(cached)
        bos = int(n > 0 and cached[0] == self._bos)
        keep = len(slot.prompt) if num_keep < 0 else num_keep + bos
        keep = max(0, min(keep, n - 2))
        discard = (n - keep) // 2
        seq = slot.seq_id
        if discard <= 0 or not llama_cpp.llama_memory_seq_rm(self._mem, seq, keep, keep + discard):
            return False
        llama_cpp.llama_memory_seq_add(self._mem, seq, keep + discard, n, -discard)
        del cached[keep : keep + discard]
        return True

    def _finish(self, slot: _Slot, why: str, error: BaseException | None = None) -> None:
        """The sequence is done: its slot is free, its KV cells stay for the prompt cache."""
        import llama_cpp

        req = slot.req
        assert req is not None
        if slot.sampler:
            llama_cpp.llama_sampler_free(slot.sampler)
            slot.sampler = None
        if slot.grammar:
            llama_cpp.llama_sampler_free(slot.grammar)
            slot.grammar = None
        slot.req = None
        self._busy.remove(slot)
        slot.next_token = None
        if slot.chunks is not None:
            self._free_media(slot)
        self._tick += 1
        slot.last_used = self._tick
        self._count(generations=1)
        if error is not None:
            self._send(req, ("error", error))
            return
        assert slot.stream is not None
        tail = slot.stream.finish()
        if slot.logprobs:
            self._send_logprobs(req, slot, tail, final=True)
        if tail:
            self._send(req, ("text", tail))
        # Ollama's `context`: the text tokens (an image is no token; Ollama's holds none either)
        tokens = [t for t in slot.cached if t >= 0] if slot.has_media else list(slot.cached)
        self._send(req, ("tokens", tokens))
        end = time.perf_counter_ns()
        first = slot.first_ns or end
        self._send(
            req,
            (
                "done",
                Stats(
                    total_duration=end - slot.start_ns,
                    load_duration=0,
                    prompt_eval_count=len(slot.prompt) - slot.reused,
                    prompt_eval_duration=first - slot.start_ns,
                    eval_count=slot.generated,
                    eval_duration=end - first,
                    done_reason=why,
                    stop_sequence=slot.stream.matched if why == "stop" else "",
                ),
            ),
        )

    def _send(self, req: _Request, item: tuple[str, Any]) -> None:
        self._outbox.append((req.out, item))

    def _flush(self) -> None:
        """Hand the step's text to the callers. Done right before `llama_decode`
        releases the GIL, so woken consumer threads run while llama.cpp computes
        instead of waiting for this thread's Python work."""
        if self._outbox:
            for out, item in self._outbox:
                out.put(item)
            self._outbox.clear()

    def _count(self, **add: int) -> None:
        for name, n in add.items():
            self._tally[name] += n

    # -- embeddings --------------------------------------------------------------------

    def _embed(self, text: str) -> list[float]:
        import llama_cpp
        import numpy as np

        tokens = self._tokenize(text)
        if len(tokens) >= self.n_ctx:
            raise PromptTooLongError(len(tokens), self.n_ctx)
        if self._ectx is None:
            ctx = self._new_context(embeddings=True)
            try:
                self._attach_adapters(ctx)
            except BaseException:
                llama_cpp.llama_free(ctx)
                raise
            self._ectx = ctx
            self._ebatch = llama_cpp.llama_batch_init(self.load_options.n_batch, 0, 1)
        ctx, batch = self._ectx, self._ebatch
        n_embd = llama_cpp.llama_model_n_embd(self._model)
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        rows = []
        step = self.load_options.n_batch
        for i in range(0, len(tokens), step):
            chunk = tokens[i : i + step]
            for j, token in enumerate(chunk):
                batch.token[j] = token
                batch.pos[j] = i + j
                batch.n_seq_id[j] = 1
                batch.seq_id[j][0] = 0
                batch.logits[j] = 1
            batch.n_tokens = len(chunk)
            mark = LLAMA_LOG.mark()
            rc = llama_cpp.llama_decode(ctx, batch)
            if rc != 0:
                raise EngineError(
                    f"llama_decode failed (code {rc}) computing an embedding: "
                    f"{reason(LLAMA_LOG.since(mark))}"
                )
            for j in range(len(chunk)):
                ptr = llama_cpp.llama_get_embeddings_ith(ctx, j)
                rows.append(np.ctypeslib.as_array(ptr, shape=(n_embd,)).copy())
        vec = np.mean(rows, axis=0) if rows else np.zeros(n_embd, dtype=np.float32)
        norm = float(np.linalg.norm(vec))
        return [float(x) for x in (vec / norm if norm > 0 else vec)]


def logprob_entry(piece: bytes, logprob: float) -> dict[str, Any]:
    """Ollama's ``TokenLogprob``: the token's text, its log-probability and its UTF-8 bytes
    (the text of a token holding part of a character shows U+FFFD; its bytes are exact)."""
    entry: dict[str, Any] = {"token": piece.decode("utf-8", "replace"), "logprob": logprob}
    if piece:
        entry["bytes"] = list(piece)
    return entry


def _covering(entries: list[dict[str, Any]], n_chars: int) -> list[dict[str, Any]]:
    """The first entries whose tokens' text starts within the first ``n_chars`` characters
    (the tokens of a stop string, which is cut off, are not part of the answer)."""
    kept = []
    at = 0
    for entry in entries:
        if at >= n_chars:
            break
        kept.append(entry)
        at += len(entry["token"])
    return kept


class _Candidates:
    """Reusable ``llama_token_data_array`` buffers for sampling under a grammar.

    The whole-vocabulary array is filled from the logits with numpy (tens of µs for 32k
    tokens); the one-element array asks the grammar about a single token.
    """

    def __init__(self, n_vocab: int):
        import llama_cpp
        import numpy as np

        self.n_vocab = n_vocab
        self.data = (llama_cpp.llama_token_data * n_vocab)()
        dtype = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
        assert dtype.itemsize == ctypes.sizeof(llama_cpp.llama_token_data)
        self.view = np.frombuffer(memoryview(self.data).cast("B"), dtype=dtype)
        self.ids = np.arange(n_vocab, dtype=np.int32)
        self.array = llama_cpp.llama_token_data_array(
            data=self.data, size=n_vocab, selected=-1, sorted=False
        )
        self.ref = ctypes.byref(self.array)
        self.one = (llama_cpp.llama_token_data * 1)()
        self.one_array = llama_cpp.llama_token_data_array(
            data=self.one, size=1, selected=-1, sorted=False
        )
        self.one_ref = ctypes.byref(self.one_array)

    def fill(self, logits: Any) -> None:
        import numpy as np

        view = self.view
        view["id"] = self.ids
        view["logit"] = np.ctypeslib.as_array(logits, shape=(self.n_vocab,))
        view["p"] = 0.0
        array = self.array
        array.size = self.n_vocab
        array.selected = -1
        array.sorted = False

    def sample(self, chain: Any, logits: Any) -> int:
        """Apply ``chain`` (no accept) to the candidates, refilled from ``logits`` if given."""
        import llama_cpp

        if logits is not None:
            self.fill(logits)
        llama_cpp.llama_sampler_apply(chain, self.ref)
        return int(self.data[self.array.selected].id)

    def allowed(self, grammar: Any, token: int) -> bool:
        import llama_cpp

        one: Any = self.one[0]
        one.id = token
        one.logit = 1.0
        one.p = 0.0
        self.one_array.size = 1
        self.one_array.selected = -1
        self.one_array.sorted = False
        llama_cpp.llama_sampler_apply(grammar, self.one_ref)
        return bool(self.one[0].logit != float("-inf"))


def _seq_id(slot: _Slot) -> int:
    return slot.seq_id


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the common prefix of two token lists."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _useful(common: int) -> int:
    return common if common > 1 else 0


def _empty_stats(req: _Request, why: str) -> Stats:
    total = time.perf_counter_ns() - req.submitted_ns
    return Stats(total, 0, 0, 0, 0, 0, done_reason=why)
