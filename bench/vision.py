"""Vision: what an image costs to encode, and what image requests cost the text streams beside them.

Run by hand (never from the tests); every figure is a paired ratio against a baseline measured in
the same run, alternating, so the shared machine's noise hits both sides alike:

(a) encode — in-process `Engine`, one fresh process per model (a new engine thread in an old
    process slows llama.cpp's OpenMP team): the time to the first token of a request that is
    one image, against a text prompt of exactly as many positions (the baseline). Also the
    projector's own encode time (`mtmd_encode_chunk`) and the decode of the image's embeddings.
    Two projectors: the test fixture (vision-proj.gguf: 16 px, 4 tokens, on the counter) and a
    bigger random "mlp" (LLaVA-1.5 style) projector generated here: 336 px, 14 px patches
    (576 tokens), 384 wide, 3 blocks (2 run: llava reads the features before the last), onto
    bench/serve.py's 0.4B "small" model (or its 128-wide "tiny" one with --quick).
(b) batching — `mfc serve`, N text streams decoding alone; the same streams while --images
    image requests (default 1) arrive one after the other once they have started; and, the
    control, while as many text prompts of the image's length arrive instead. Each stream's
    throughput (its tokens / its time, request to end) with arrivals / alone, the longest wait
    between two tokens of a stream (the stall) with an image / with the same-length text, and
    whether each stream's text is unchanged (greedy).
(c) llama.cpp's own llama-server (bench/llama_server.py: the same vendored llama.cpp, run on the
    wheel's libraries, `--mmproj` the same projector): the same image request's time to first
    token, and a text prompt's of as many tokens, mfc / llama-server; then (b) on llama-server,
    whose with/without ratios are the baseline for mfc's.

The table: value and baseline are medians over the rounds; ratio is the median (min-max) of the
per-round ratios value / baseline; best is min(value) / min(baseline), each side's least
disturbed run. Image requests to the servers are the image then a short text
(`IMAGE_SUFFIX`), as llama-server aborts on a prompt that ends with an image.

The big projector and the models are cached under ~/.cache/mfc/ (bench-vision/, and bench-serve/
for the text models), not committed. The vision model goes into bench-serve's store with the
store API (the text model's manifest plus a projector layer).

    python bench/vision.py                  # all of it, small model (~15 min on 2 idle cores)
    python bench/vision.py --quick          # smoke run: tiny text model, 3 rounds (~2 min)
    python bench/vision.py --only encode    # comma list of: encode, batch, llama
    python bench/vision.py --json out.json  # also write the results
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import io
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gguf
import llama_server
import numpy as np
import serve
from serve import N_BATCH, THREADS, Result, check, free_port, load1, text

from mfc.testing.fixtures import generate as generate_fixtures
from mfc.testing.fixtures import write_gguf

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mfc" / "bench-vision"
IMAGE_SUFFIX = " Describe it."
"""Text after the image in server requests: llama-server aborts (GGML_ASSERT(batch.size() > 0)
in server-context.cpp) on a /completion prompt that ends with an image."""
LLAMA_MARKER = "<__media__>"  # pinned with LLAMA_MEDIA_MARKER (llama-server picks a random one)


# --- the projector --------------------------------------------------------------------------


@dataclass(frozen=True)
class Projector:
    """A random llava "mlp" projector: CLIP-like blocks, then mm.0 → GELU → mm.2."""

    name: str
    image_size: int
    patch: int
    width: int
    heads: int
    ff: int
    blocks: int
    hidden: int  # width between mm.0 and mm.2

    @property
    def tokens(self) -> int:
        return (self.image_size // self.patch) ** 2

    def key(self, proj_dim: int) -> str:
        return hashlib.sha256(f"{self!r}|{proj_dim}|v1".encode()).hexdigest()[:12]


BIG = Projector("big", 336, 14, 384, 6, 1536, 3, 1024)


def write_projector(p: Projector, proj_dim: int, path: Path) -> None:
    rng = np.random.default_rng(336)

    def mat(rows: int, cols: int, scale: float = 0.02) -> np.ndarray:
        return rng.standard_normal((rows, cols), dtype=np.float32) * scale

    def vec(n: int, value: float = 0.0) -> np.ndarray:
        return np.full(n, value, dtype=np.float32)

    w = gguf.GGUFWriter(path=None, arch="clip")
    w.add_type("mmproj")
    w.add_name(f"mfc-bench-{p.name}-projector")
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_bool("clip.has_vision_encoder", True)
    w.add_string("clip.projector_type", "mlp")
    for key, value in {
        "image_size": p.image_size,
        "patch_size": p.patch,
        "embedding_length": p.width,
        "feed_forward_length": p.ff,
        "projection_dim": proj_dim,
        "block_count": p.blocks,
        "attention.head_count": p.heads,
    }.items():
        w.add_uint32(f"clip.vision.{key}", value)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    w.add_array("clip.vision.image_mean", [0.48, 0.46, 0.41])
    w.add_array("clip.vision.image_std", [0.27, 0.26, 0.28])
    conv = rng.standard_normal((p.width, 3, p.patch, p.patch), dtype=np.float32) * 0.02
    w.add_tensor("v.patch_embd.weight", conv)
    w.add_tensor("v.position_embd.weight", mat(p.tokens, p.width))
    w.add_tensor("v.pre_ln.weight", vec(p.width, 1.0))
    w.add_tensor("v.pre_ln.bias", vec(p.width))
    for i in range(p.blocks):
        b = f"v.blk.{i}"
        for norm in ("ln1", "ln2"):
            w.add_tensor(f"{b}.{norm}.weight", vec(p.width, 1.0))
            w.add_tensor(f"{b}.{norm}.bias", vec(p.width))
        for proj in ("attn_q", "attn_k", "attn_v", "attn_out"):
            w.add_tensor(f"{b}.{proj}.weight", mat(p.width, p.width))
            w.add_tensor(f"{b}.{proj}.bias", vec(p.width))
        w.add_tensor(f"{b}.ffn_up.weight", mat(p.ff, p.width))
        w.add_tensor(f"{b}.ffn_up.bias", vec(p.ff))
        w.add_tensor(f"{b}.ffn_down.weight", mat(p.width, p.ff))
        w.add_tensor(f"{b}.ffn_down.bias", vec(p.width))
    w.add_tensor("mm.0.weight", mat(p.hidden, p.width, 0.05))
    w.add_tensor("mm.0.bias", vec(p.hidden))
    w.add_tensor("mm.2.weight", mat(proj_dim, p.hidden, 0.05))
    w.add_tensor("mm.2.bias", vec(proj_dim))
    write_gguf(w, path)


def projector_file(p: Projector, proj_dim: int) -> Path:
    path = CACHE / f"{p.name}-{p.key(proj_dim)}.gguf"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        t0 = time.perf_counter()
        write_projector(p, proj_dim, tmp)
        tmp.rename(path)
        print(
            f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f}s"
        )
    return path


def photo(seed: int, size: tuple[int, int] = (640, 480)) -> bytes:
    """A JPEG of smooth gradients plus noise: a photo's size and cost to decode, unique by seed."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], axis=-1)
    pixels = np.clip(base + rng.normal(0, 24, (h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def vision_tag(store_dir: Path, shape: serve.Shape, proj: Path) -> str:
    """``bench-vis-<shape>``: the text model's manifest plus a projector layer (store API)."""
    from mfc.store import Descriptor, Manifest, Store
    from mfc.store import media_types as mt

    store = Store(store_dir)
    base = store.read_manifest(f"bench-{shape.name}:{shape.key}")
    blob = store.put_file(proj)
    layers = [d for d in base.layers if d.media_type != mt.PROJECTOR]
    layers.insert(1, Descriptor(mt.PROJECTOR, *blob))
    tag = f"bench-vis-{shape.name}:{blob.digest.removeprefix('sha256:')[:12]}"
    store.write_manifest(tag, Manifest(base.config, tuple(layers)))
    return tag


# --- reporting ------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    unit: str
    value: list[float] = field(default_factory=list)  # mfc, or "with images"
    base: list[float] = field(default_factory=list)  # the baseline, paired by round
    base_name: str = ""
    note: str = ""
    load: list[float] = field(default_factory=list)

    def ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.value, self.base, strict=False) if b]

    def summary(self) -> dict[str, Any]:
        r = self.ratios()
        return {
            "scenario": self.scenario,
            "unit": self.unit,
            "value": self.value,
            "baseline": self.base,
            "baseline_name": self.base_name,
            "value_median": statistics.median(self.value) if self.value else None,
            "baseline_median": statistics.median(self.base) if self.base else None,
            "ratio_median": statistics.median(r) if r else None,
            "ratio_min": min(r) if r else None,
            "ratio_max": max(r) if r else None,
            # min/min: the least disturbed run of each side (the machine is shared)
            "best_ratio": min(self.value) / min(self.base)
            if self.value and min(self.base)
            else None,
            "load_average": [min(self.load), max(self.load)] if self.load else None,
            "note": self.note,
        }


ROWS: list[Row] = []


def fmt(x: float | None) -> str:
    return serve.fmt(x)


def print_table() -> None:
    print()
    head = (
        f"{'scenario':<46} {'unit':<6} {'value':>8} {'baseline':>9} {'ratio (min-max)':>19}"
        f" {'best':>6}  {'baseline is':<34} load"
    )
    print(head)
    print("-" * len(head))
    for row in ROWS:
        s = row.summary()
        ratio = (
            f"{fmt(s['ratio_median'])} ({fmt(s['ratio_min'])}-{fmt(s['ratio_max'])})"
            if s["ratio_median"]
            else "-"
        )
        load = s["load_average"]
        print(
            f"{row.scenario:<46} {row.unit:<6} {fmt(s['value_median']):>8} "
            f"{fmt(s['baseline_median']):>9} {ratio:>19} {fmt(s['best_ratio']):>6}  "
            f"{row.base_name:<34} "
            f"{'' if not load else f'{load[0]:.1f}-{load[1]:.1f}'}"
        )
        if row.note:
            print(f"    {row.note}")


# --- (a) encode: in-process engine, one child process per model ------------------------------


def encode_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in its own process: ``rounds`` pairs of (one image, same-length text) requests."""
    from mfc.runtime.engine import Engine
    from mfc.runtime.media import MEDIA_MARKER
    from mfc.runtime.options import LoadOptions, SamplingOptions

    load = LoadOptions(
        n_ctx=int(spec["ctx"]),
        n_batch=N_BATCH,
        n_threads=THREADS,
        n_gpu_layers=0,
        main_gpu=0,
        use_mmap=True,
    )
    engine = Engine(Path(spec["model"]), load, projector=Path(spec["projector"]))
    sampling = SamplingOptions(temperature=0.0, num_predict=1, seed=0)
    try:
        image = photo(0)
        positions = engine.count_tokens(MEDIA_MARKER, [image])
        bos = len(engine.tokenize(""))

        def same_length_text() -> str:
            t = text(positions - bos)
            while len(engine.tokenize(t)) > positions:
                t = t[:-1]
            while len(engine.tokenize(t)) < positions:
                t += text(1)
            return t

        def timed(prompt: str, images: list[bytes]) -> tuple[float, dict[str, int]]:
            before = engine.counters
            t0 = time.perf_counter()
            gen = engine.generate(prompt, sampling, images=images)
            for _ in gen:
                pass
            took = time.perf_counter() - t0
            after = engine.counters
            delta = {
                k: getattr(after, k) - getattr(before, k)
                for k in ("image_encode_ns", "image_decode_ns", "image_tokens")
            }
            return took, delta

        timed(MEDIA_MARKER, [photo(1)])  # warm-up: first encode allocates
        timed(same_length_text(), [])
        rounds = []
        for r in range(int(spec["rounds"])):
            img = photo(100 + r)
            txt = same_length_text()
            out: dict[str, Any] = {}
            order = ["image", "text"] if r % 2 == 0 else ["text", "image"]
            for kind in order:
                if kind == "image":
                    out["image_s"], delta = timed(MEDIA_MARKER, [img])
                    out.update(delta)
                else:
                    out["text_s"], _ = timed(txt, [])
            rounds.append(out)
        return {"positions": positions, "bytes": len(image), "rounds": rounds}
    finally:
        engine.close()


def encode(name: str, model: Path, projector: Path, rounds: int) -> None:
    spec = {"model": str(model), "projector": str(projector), "rounds": rounds, "ctx": 2048}
    proc = subprocess.run(
        [sys.executable, __file__, "--_encode", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"encode child failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    n = res["positions"]
    rs = res["rounds"]
    ttft = Row(
        f"{name}: 1 image ({n} pos) to 1st token",
        "ms",
        [r["image_s"] * 1e3 for r in rs],
        [r["text_s"] * 1e3 for r in rs],
        f"text prompt of {n} tokens",
        load=[load1()],
    )
    enc = Row(
        f"{name}: projector encode (mtmd_encode_chunk)",
        "ms",
        [r["image_encode_ns"] / 1e6 for r in rs],
        [r["text_s"] * 1e3 for r in rs],
        f"text prompt of {n} tokens",
        note=(
            "image embeddings decoded in "
            f"{statistics.median(r['image_decode_ns'] for r in rs) / 1e6:.1f} ms (median); "
            f"JPEG 640x480, {res['bytes'] // 1024} KB"
        ),
        load=[load1()],
    )
    ROWS.extend([ttft, enc])
    s = ttft.summary()
    print(
        f"  {ttft.scenario}: {fmt(s['value_median'])} ms vs text {fmt(s['baseline_median'])} ms,"
        f" ratio {fmt(s['ratio_median'])}; encode {fmt(enc.summary()['value_median'])} ms",
        flush=True,
    )


# --- servers --------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def timed(
    parse: Callable[[bytes, Result], bool], times: list[float] | None
) -> Callable[[bytes, Result], bool]:
    """``parse``, also appending the arrival time of each piece of text to ``times``."""
    if times is None:
        return parse

    def wrapped(line: bytes, r: Result) -> bool:
        before = len(r.text)
        done = parse(line, r)
        if len(r.text) > before:
            times.append(time.perf_counter())
        return done

    return wrapped


class MfcSide:
    name = "mfc"

    def __init__(self, server: serve.Mfc):
        self.s = server

    def text(
        self,
        prompt: str,
        n: int,
        started: threading.Event | None = None,
        times: list[float] | None = None,
    ) -> Result:
        body = {
            "model": self.s.model,
            "prompt": prompt,
            "raw": True,
            "stream": True,
            "keep_alive": -1,
            "options": self.s.options(n),
        }
        parse = timed(serve._mfc_line, times)
        return serve.stream(self.s.port, "/api/generate", body, parse, started=started)

    def image(self, data: bytes, n: int) -> Result:
        body = {
            "model": self.s.model,
            "prompt": "[img-0]" + IMAGE_SUFFIX,
            "raw": True,
            "images": [b64(data)],
            "stream": True,
            "keep_alive": -1,
            "options": self.s.options(n),
        }
        return serve.stream(self.s.port, "/api/generate", body, serve._mfc_line)


class LlamaVision(serve.Server):
    """llama-server with ``--mmproj``, configured as bench/serve.py's `Llama`."""

    side = "llama-server"

    def __init__(self, exe: Path, blob: Path, proj: Path, np_: int, ctx: int, log: Path):
        self.np, self.ctx = np_, ctx
        self.port = free_port()
        env = dict(os.environ)
        env.pop("LLAMA_CPP_LIB_PATH", None)
        own = exe.parent.parent / "lib"
        env["LD_LIBRARY_PATH"] = f"{serve.wheel_libdir()}:{own}"
        env["LLAMA_MEDIA_MARKER"] = LLAMA_MARKER  # else a random one per start (see /props)
        cmd = serve.llama_cmd(exe, blob, self.port, np_, ctx, ("--mmproj", str(proj)))
        self.log = log.open("ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_ready("/health", 300)


class LlamaSide:
    name = "llama-server"

    def __init__(self, server: LlamaVision):
        self.s = server

    def _body(self, prompt: Any, n: int) -> dict[str, Any]:
        return {
            "prompt": prompt,
            "n_predict": n,
            "temperature": 0,
            "ignore_eos": True,
            "stream": True,
            "cache_prompt": True,
            "seed": 0,
        }

    def text(
        self,
        prompt: str,
        n: int,
        started: threading.Event | None = None,
        times: list[float] | None = None,
    ) -> Result:
        body = self._body(prompt, n)
        parse = timed(serve._llama_line, times)
        return serve.stream(self.s.port, "/completion", body, parse, started=started)

    def image(self, data: bytes, n: int) -> Result:
        prompt = {"prompt_string": LLAMA_MARKER + IMAGE_SUFFIX, "multimodal_data": [b64(data)]}
        return serve.stream(self.s.port, "/completion", self._body(prompt, n), serve._llama_line)


Side = MfcSide | LlamaSide


# --- (b) batching, and (c) the same on llama-server -----------------------------------------


def streams(
    side: Side, prompts: list[str], n: int, arrivals: list[Callable[[], Result]]
) -> tuple[list[Result], list[float], list[Result]]:
    """N text streams at once; once they have started, the ``arrivals`` requests, one after
    the other. Returns the streams, each stream's longest wait between two pieces of text
    (seconds), and the arrivals' results."""
    started = threading.Event()
    sent: list[Result] = []

    def feeder() -> None:
        started.wait(600)
        for call in arrivals:
            sent.append(call())

    th = threading.Thread(target=feeder) if arrivals else None
    if th:
        th.start()
    times: list[list[float]] = [[] for _ in prompts]
    calls: list[Callable[[], Result]] = [
        (lambda p=p, i=i: side.text(p, n, started if i == 0 else None, times[i]))
        for i, p in enumerate(prompts)
    ]
    try:
        _, results = serve.concurrent(calls)
    finally:
        started.set()
        if th:
            th.join()
    for r in results:
        check(r, n, side.name)
    for r in sent:
        if r.error:
            raise RuntimeError(f"{side.name} request during the streams: {r.error}")
    gaps = [max((b - a for a, b in itertools.pairwise(t)), default=0.0) for t in times]
    return results, gaps, sent


def throughput(r: Result) -> float:
    """A stream's tokens over its whole time, request to last byte: robust to a server that
    sends several tokens in one piece (mfc's runner does when the client lags), and it counts
    every stall, however the stream's pieces fall around it."""
    return r.n_tokens / (r.t_end - r.t_send)


def batching(side: Side, n_streams: int, n: int, images: int, positions: int, rounds: int) -> None:
    """(b): the streams with ``images`` image requests arriving, against the same streams alone
    and against the same streams with as many text requests of the image's length arriving
    (the control: what any prompt of that size costs the others)."""
    label = f"{images} image{'s' * (images != 1)}"
    alone = f"the same {n_streams} streams, nothing arriving"
    control = f"{images} text prompt(s) of {positions} tok instead"
    rate = Row(
        f"{side.name}: {n_streams} streams' tok/s, {label} arriving", "tok/s", base_name=alone
    )
    rate_t = Row(f"{side.name}: the same, {control}", "tok/s", base_name=alone)
    stall = Row(f"{side.name}: longest wait between 2 tokens, {label}", "ms", base_name=control)
    same = {"image": 0, "text": 0}
    total = 0
    own: dict[str, list[float]] = {"image": [], "text": []}
    for r in range(rounds):
        prompts = [text(16) for _ in range(n_streams)]
        pictures = [photo(r * 1000 + k) for k in range(images)]
        texts = [text(positions) for _ in range(images)]
        kinds: dict[str, list[Callable[[], Result]]] = {
            "none": [],
            "image": [lambda d=d: side.image(d, 1) for d in pictures],
            "text": [lambda t=t: side.text(t, 1) for t in texts],
        }
        order = list(kinds) if r % 2 == 0 else list(kinds)[::-1]
        got: dict[str, tuple[list[Result], list[float]]] = {}
        for kind in order:
            results, gaps, sent = streams(side, prompts, n, kinds[kind])
            got[kind] = (results, gaps)
            own.get(kind, []).extend((x.t_first - x.t_send) * 1e3 for x in sent)
        tput = {k: statistics.mean(throughput(x) for x in got[k][0]) for k in got}
        rate.value.append(tput["image"])
        rate.base.append(tput["none"])
        rate_t.value.append(tput["text"])
        rate_t.base.append(tput["none"])
        stall.value.append(max(got["image"][1]) * 1e3)
        stall.base.append(max(got["text"][1]) * 1e3)
        for row in (rate, rate_t, stall):
            row.load.append(load1())
        for i, base in enumerate(got["none"][0]):
            for kind in ("image", "text"):
                same[kind] += "".join(got[kind][0][i].text) == "".join(base.text)
            total += 1
    rate.note = f"each stream's text unchanged by the images: {same['image']}/{total}"
    rate_t.note = f"each stream's text unchanged by the text prompts: {same['text']}/{total}"
    stall.note = (
        f"the arriving request's own time to first token: image "
        f"{statistics.median(own['image']):.0f} ms, text {statistics.median(own['text']):.0f} ms"
        f" (medians); streams alone: {statistics.median(rate.base):.3g} tok/s"
    )
    ROWS.extend([rate, rate_t, stall])
    for row in (rate, rate_t, stall):
        s = row.summary()
        print(
            f"  {row.scenario}: {fmt(s['value_median'])} vs {fmt(s['baseline_median'])} "
            f"{row.unit}, ratio {fmt(s['ratio_median'])}; {row.note}",
            flush=True,
        )


def first_token(fn: Callable[..., Result], *args: Any) -> float:
    r = fn(*args)
    if r.error:
        raise RuntimeError(r.error)
    return r.ttft * 1e3


def versus_llama(m: MfcSide, ll: LlamaSide, positions: int, rounds: int) -> None:
    img = Row(
        f"image request ({positions} pos) to 1st token",
        "ms",
        base_name="llama-server, same image (--mmproj)",
    )
    txt = Row(f"text prompt ({positions} tok) to 1st token", "ms", base_name="llama-server")
    for r in range(rounds):
        data = photo(5000 + r)
        prompt = text(positions)
        sides = [(m, img.value, txt.value), (ll, img.base, txt.base)]
        for side, img_out, txt_out in sides if r % 2 == 0 else sides[::-1]:
            img_out.append(first_token(side.image, data, 1))
            txt_out.append(first_token(side.text, prompt, 1))
        img.load.append(load1())
        txt.load.append(load1())
    ROWS.extend([img, txt])
    for row in (img, txt):
        s = row.summary()
        print(
            f"  {row.scenario}: mfc {fmt(s['value_median'])} vs llama-server "
            f"{fmt(s['baseline_median'])} ms, ratio {fmt(s['ratio_median'])}",
            flush=True,
        )


@contextlib.contextmanager
def mfc_server(store: Path, tag: str, np_: int, ctx: int, log: Path) -> Iterator[MfcSide]:
    s = serve.Mfc(store, tag, np_, ctx, log)
    try:
        side = MfcSide(s)
        check(side.text(text(8), 2), 2, "mfc")
        r = side.image(photo(7), 1)
        if r.error:
            raise RuntimeError(f"mfc image request: {r.error}")
        yield side
    finally:
        s.stop()


@contextlib.contextmanager
def llama_vision(
    exe: Path, blob: Path, proj: Path, np_: int, ctx: int, log: Path
) -> Iterator[LlamaSide]:
    s = LlamaVision(exe, blob, proj, np_, ctx, log)
    try:
        side = LlamaSide(s)
        check(side.text(text(8), 2), 2, "llama-server")
        r = side.image(photo(7), 1)
        if r.error:
            raise RuntimeError(f"llama-server image request: {r.error}")
        yield side
    finally:
        s.stop()


# --- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    ap.add_argument("--quick", action="store_true", help="tiny text model, 3 rounds")
    ap.add_argument("--rounds", type=int, help="rounds per scenario (default 5; quick 3)")
    ap.add_argument("--streams", type=int, default=3, help="text streams in (b) (default 3)")
    ap.add_argument("--tokens", type=int, help="tokens per text stream (default 48; quick 64)")
    ap.add_argument(
        "--images", type=int, default=1, help="image requests during the streams in (b) (1)"
    )
    ap.add_argument("--only", help="comma list of: encode, batch, llama (default all)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--_encode", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._encode:
        print(json.dumps(encode_child(json.loads(args._encode))))
        return 0
    rounds = args.rounds or (3 if args.quick else 5)
    n_tokens = args.tokens or (64 if args.quick else 48)
    only = set(args.only.split(",")) if args.only else {"encode", "batch", "llama"}
    shape = serve.TINY if args.quick else serve.SMALL
    print(
        f"vision bench: {THREADS} threads, batch {N_BATCH}; text model {shape.name}; "
        f"load average {load1():.2f}",
        flush=True,
    )
    fixtures = generate_fixtures(CACHE / "fixtures")
    store, blobs = serve.prepare_models([shape])
    blob = blobs[shape.name]
    big = projector_file(BIG, shape.n_embd)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mfc-bench-vision-") as tmp:
        logs = Path(tmp)
        try:
            if "encode" in only:
                print("(a) encode, in-process engine")
                encode(
                    "fixture 16px on counter",
                    fixtures["counter-f32.gguf"],
                    fixtures["vision-proj.gguf"],
                    max(rounds * 3, 15),
                )
                encode(f"big {BIG.image_size}px on {shape.name}", blob, big, rounds)
            if only & {"batch", "llama"}:
                tag = vision_tag(store, shape, big)
                np_, ctx = args.streams + 1, 1024
                exe = llama_server.build()[0] if "llama" in only else None
                print(f"(b) batching, mfc serve ({tag}, {np_} slots)")
                with mfc_server(store, tag, np_, ctx, logs / "mfc.log") as m:
                    if "batch" in only:
                        batching(m, args.streams, n_tokens, args.images, BIG.tokens, rounds)
                    if exe is not None:
                        print("(c) llama-server baseline (--mmproj)")
                        with llama_vision(exe, blob, big, np_, ctx, logs / "llama.log") as ll:
                            versus_llama(m, ll, BIG.tokens, rounds)
                            if "batch" in only:
                                batching(
                                    ll, args.streams, n_tokens, args.images, BIG.tokens, rounds
                                )
        except BaseException:
            for log in sorted(logs.glob("*.log")):
                tail = log.read_text(errors="replace").splitlines()[-25:]
                print(f"--- tail of {log.name}:\n" + "\n".join(tail), file=sys.stderr)
            print_table()
            raise
    print(f"\nmeasured in {time.perf_counter() - t_start:.0f}s")
    print_table()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {"threads": THREADS, "rows": [r.summary() for r in ROWS], "load_end": load1()}
        args.json.write_text(json.dumps(result, indent=1))
        print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
