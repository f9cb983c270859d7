"""`mfc serve` against llama.cpp's own `llama-server`, in the same run, alternating.

llama-server is built once from the llama.cpp vendored in the llama-cpp-python sdist, with
the GGML flags tools/install_llama.py gives llama-cpp-python (bench/llama_server.py), and runs
on the *same* libllama/libggml files as mfc's runner (LD_LIBRARY_PATH = the installed wheel's
lib dir; the mapped libraries of both processes are checked and printed). Both servers get the
same GGUF blob (the one `mfc build` put in the store), the same threads, batch 512, flash
attention off, one KV stream per slot of the full context (llama-server: -c ctx*np, -no-kvu).

Models (written here with seeded random weights, cached under ~/.cache/mfc/bench-serve/):
- small: a ~0.4B-parameter llama (1024 wide, 24 layers, GQA 16/4, 32000-token vocabulary),
  written as f16 and quantized to Q8_0 by `mfc build --quantize q8_0`;
- tiny: the counter fixture's shape and vocabulary (mfc.testing.counter: 128 wide, 1 layer,
  f32) with random weights, because the counter itself ends with EOS after "z" and Ollama's API
  has no ignore_eos; per token it costs what the counter costs.
Control and byte tokens score 0 in both, so greedy decoding never emits EOS: num_predict /
n_predict (with ignore_eos) bound every answer and both sides produce the same token count.

Every figure is the median over alternating rounds (order flips each round); ratios are paired
per round, always mfc / llama-server (the target column says which way is good). The load
average is printed with every row: the machine is shared.

    python bench/serve.py                  # full run (~15 min on 2 cores, once models exist)
    python bench/serve.py --quick          # tiny model only, 3 rounds (smoke run)
    python bench/serve.py --tiny-only      # tiny model only, full rounds
    python bench/serve.py --json out.json  # also write the results
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import http.client
import importlib.util
import json
import os
import random
import signal
import socket
import statistics
import string
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

from mfc.testing import counter
from mfc.testing.fixtures import add_counter_tokenizer, write_gguf

THREADS = os.cpu_count() or 2
N_BATCH = 512
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mfc" / "bench-serve"
TEMPLATE = "{{ range .Messages }}<{{ .Role }}>{{ .Content }}\n{{ end }}<assistant>"


# --- models -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    name: str
    n_vocab: int
    n_embd: int
    n_layer: int
    n_ff: int
    n_head: int
    n_head_kv: int
    ctx: int
    dtype: str  # "f16" (then quantized to Q8_0) or "f32"
    quantize: str | None

    @property
    def key(self) -> str:
        return hashlib.sha256(repr(self).encode() + b"|v1").hexdigest()[:12]


SMALL = Shape("small", 32000, 1024, 30, 2816, 16, 4, 4096, "f16", "q8_0")
TINY = Shape(
    "tiny",
    len(counter.vocab().tokens),
    counter.N_EMBD,
    counter.N_LAYER,
    counter.N_FF,
    counter.N_HEAD,
    counter.N_HEAD,
    2048,
    "f32",
    None,
)


def _extra_pieces(n: int) -> list[str]:
    """Single CJK/Hangul characters: never made by tokenizing ASCII; whole UTF-8 when printed."""
    ranges = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xAC00, 0xD7A3)]
    out: list[str] = []
    for lo, hi in ranges:
        out.extend(chr(c) for c in range(lo, hi + 1))
    if len(out) < n:
        raise ValueError("vocabulary too large")
    return out[:n]


def write_model(shape: Shape, path: Path) -> None:
    rng = np.random.default_rng(1234)
    ftype = gguf.LlamaFileType.MOSTLY_F16 if shape.dtype == "f16" else gguf.LlamaFileType.ALL_F32
    np_type = np.float16 if shape.dtype == "f16" else np.float32
    w = gguf.GGUFWriter(path=None, arch="llama")
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(f"mfc-bench-{shape.name}")
    w.add_file_type(ftype)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_vocab_size(shape.n_vocab)
    w.add_context_length(shape.ctx)
    w.add_embedding_length(shape.n_embd)
    w.add_block_count(shape.n_layer)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_rope_dimension_count(shape.n_embd // shape.n_head)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    v = counter.vocab()
    base = len(v.tokens)
    if shape.n_vocab == base:
        add_counter_tokenizer(w)
    else:  # the counter's SentencePiece vocabulary plus whole-character pieces
        extra = _extra_pieces(shape.n_vocab - base)
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list([*v.tokens, *extra])
        w.add_token_scores([*v.scores, *([-1000.0] * len(extra))])
        w.add_token_types([*v.types, *([int(gguf.TokenType.NORMAL)] * len(extra))])
        w.add_unk_token_id(counter.UNK)
        w.add_bos_token_id(counter.BOS)
        w.add_eos_token_id(counter.EOS)
        w.add_add_bos_token(True)
    w.add_add_space_prefix(False)

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np_type)

    d, kv = shape.n_embd, shape.n_embd // shape.n_head * shape.n_head_kv
    w.add_tensor("token_embd.weight", mat(shape.n_vocab, d))
    for i in range(shape.n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(d, dtype=np.float32))
        w.add_tensor(f"blk.{i}.attn_q.weight", mat(d, d))
        w.add_tensor(f"blk.{i}.attn_k.weight", mat(kv, d))
        w.add_tensor(f"blk.{i}.attn_v.weight", mat(kv, d))
        w.add_tensor(f"blk.{i}.attn_output.weight", mat(d, d))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(d, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", mat(shape.n_ff, d))
        w.add_tensor(f"blk.{i}.ffn_up.weight", mat(shape.n_ff, d))
        w.add_tensor(f"blk.{i}.ffn_down.weight", mat(d, shape.n_ff))
    w.add_tensor("output_norm.weight", np.ones(d, dtype=np.float32))
    out = mat(shape.n_vocab, d)
    out[:259] = 0  # control (3) and byte (256) tokens score 0: never the greedy pick
    w.add_tensor("output.weight", out)
    write_gguf(w, path)


def mfc_exe() -> list[str]:
    exe = Path(sys.executable).parent / "mfc"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mfc"]


def prepare_models(shapes: list[Shape]) -> tuple[Path, dict[str, Path]]:
    """Build each model with `mfc build` into a cached store; name -> its model blob."""
    store = CACHE / "models"
    blobs: dict[str, Path] = {}
    for shape in shapes:
        tag = f"bench-{shape.name}:{shape.key}"
        src = CACHE / "src" / shape.key
        env = dict(os.environ, MFC_MODELS=str(store))
        manifest = store / "manifests" / "registry.ollama.ai" / "library" / f"bench-{shape.name}"
        if not (manifest / shape.key).exists():
            src.mkdir(parents=True, exist_ok=True)
            gg = src / f"{shape.name}-{shape.dtype}.gguf"
            if not gg.exists():
                t0 = time.perf_counter()
                write_model(shape, gg.with_suffix(".tmp"))
                gg.with_suffix(".tmp").rename(gg)
                print(
                    f"wrote {gg.name} ({gg.stat().st_size / 1e6:.0f} MB) "
                    f"in {time.perf_counter() - t0:.1f}s",
                    flush=True,
                )
            (src / "Modelfile").write_text(f'FROM ./{gg.name}\nTEMPLATE """{TEMPLATE}"""\n')
            cmd = [*mfc_exe(), "build", "--quiet", "-t", tag, str(src)]
            if shape.quantize:
                cmd[2:2] = ["--quantize", shape.quantize]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
            print(
                f"mfc build {'--quantize ' + shape.quantize + ' ' if shape.quantize else ''}"
                f"{tag}: {time.perf_counter() - t0:.1f}s",
                flush=True,
            )
        blobs[shape.name] = model_blob(store, manifest / shape.key)
    return store, blobs


def model_blob(store: Path, manifest: Path) -> Path:
    doc = json.loads(manifest.read_text())
    layer = next(x for x in doc["layers"] if x["mediaType"].endswith("image.model"))
    return store / "blobs" / layer["digest"].replace(":", "-")


# --- servers ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wheel_libdir() -> Path:
    spec = importlib.util.find_spec("llama_cpp")
    assert spec and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p.name))
            except (OSError, ValueError, IndexError):
                pass
    return out


def mapped_libs(pid: int) -> set[str]:
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return set()
    return {ln.split()[-1] for ln in maps.splitlines() if "/libggml" in ln or "/libllama" in ln}


class Server:
    side = ""
    proc: subprocess.Popen[bytes]
    port: int

    def get(self, path: str, timeout: float = 5) -> tuple[int, bytes]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def wait_ready(self, path: str, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.side} exited with {self.proc.returncode}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self.get(path, 2)[0] == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{self.side} not ready after {timeout}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def pids(self) -> list[int]:
        return [self.proc.pid]

    def rss(self) -> float:
        return sum(rss_mb(p) for p in self.pids())


class Mfc(Server):
    side = "mfc"
    cold = 0.0  # seconds from the first request to its answer (runner start + model load)

    def __init__(self, store: Path, model: str, np_: int, ctx: int, log: Path):
        self.model, self.np, self.ctx = model, np_, ctx
        self.port = free_port()
        env = dict(
            os.environ,
            MFC_HOST=f"127.0.0.1:{self.port}",
            MFC_MODELS=str(store),
            MFC_NUM_PARALLEL=str(np_),
            MFC_KEEP_ALIVE="-1",
        )
        for k in list(env):
            if k.startswith("OLLAMA_") or k in ("LLAMA_CPP_LIB_PATH", "LD_LIBRARY_PATH"):
                env.pop(k)
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [*mfc_exe(), "serve"], env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.wait_ready("/")

    def options(self, n: int) -> dict[str, Any]:
        return {
            "temperature": 0,
            "num_predict": n,
            "num_ctx": self.ctx,
            "num_thread": THREADS,
            "num_batch": N_BATCH,
            "seed": 0,
        }

    def generate(self, prompt: str, n: int, started: threading.Event | None = None) -> Result:
        body = {
            "model": self.model,
            "prompt": prompt,
            "raw": True,
            "stream": True,
            "keep_alive": -1,
            "options": self.options(n),
        }
        return stream(self.port, "/api/generate", body, _mfc_line, started=started)

    def chat(self, messages: list[dict[str, str]], n: int) -> Result:
        body = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "keep_alive": -1,
            "options": self.options(n),
        }
        return stream(self.port, "/api/chat", body, _mfc_line)

    def runners(self) -> list[int]:
        return children(self.proc.pid)

    def pids(self) -> list[int]:
        return [self.proc.pid, *self.runners()]


def llama_cmd(
    exe: Path, blob: Path, port: int, np_: int, ctx: int, extra: tuple[str, ...] = ()
) -> list[str]:
    """llama-server configured as mfc serve runs: same threads, batch, slots and context per
    slot, flash attention off (batch-invariant greedy outputs), no unified KV, no web UI."""
    return [
        str(exe),
        "-m",
        str(blob),
        *extra,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "-t",
        str(THREADS),
        "-tb",
        str(THREADS),
        "-c",
        str(ctx * np_),
        "-np",
        str(np_),
        "-b",
        str(N_BATCH),
        "-ub",
        str(N_BATCH),
        "-fa",
        "off",
        "-no-kvu",
        "--no-webui",
        "-fit",
        "off",
    ]


class Llama(Server):
    side = "llama-server"

    def __init__(self, exe: Path, blob: Path, np_: int, ctx: int, log: Path, libdir: Path | None):
        self.np, self.ctx = np_, ctx
        self.port = free_port()
        env = dict(os.environ)
        env.pop("LLAMA_CPP_LIB_PATH", None)
        # The wheel's libllama/libggml first (the very files mfc's runner maps), then the
        # build's own dir for what the wheel lacks (libllama-common, libllama-server-impl).
        own = exe.parent.parent / "lib"
        env["LD_LIBRARY_PATH"] = f"{libdir}:{own}" if libdir else str(own)
        cmd = llama_cmd(exe, blob, self.port, np_, ctx)
        self.log = log.open("ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_ready("/health", 300)

    def generate(self, prompt: str, n: int, cache: bool = False) -> Result:
        body = {
            "prompt": prompt,
            "n_predict": n,
            "temperature": 0,
            "ignore_eos": True,
            "stream": True,
            "cache_prompt": cache,
            "seed": 0,
        }
        return stream(self.port, "/completion", body, _llama_line)


# --- requests -----------------------------------------------------------------------------------


@dataclass
class Result:
    t_send: float = 0.0
    t_first: float = 0.0  # first piece of text
    t_last: float = 0.0
    t_end: float = 0.0
    n_tokens: int = 0
    text: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ttft(self) -> float:
        return self.t_first - self.t_send

    @property
    def decode_rate(self) -> float:
        return (self.n_tokens - 1) / (self.t_last - self.t_first)


def _mfc_line(line: bytes, r: Result) -> bool:
    obj = json.loads(line)
    if "error" in obj:
        r.error = obj["error"]
        return True
    piece = obj.get("response") or (obj.get("message") or {}).get("content")
    if piece:
        r.text.append(piece)
        return False
    if obj.get("done"):
        r.n_tokens = int(obj.get("eval_count") or 0)
        return True
    return False


def _llama_line(line: bytes, r: Result) -> bool:
    if not line.startswith(b"data: "):
        if line.startswith(b"error:") or line.startswith(b"{"):
            r.error = line.decode(errors="replace")
            return True
        return False
    obj = json.loads(line[6:])
    if obj.get("content"):
        r.text.append(obj["content"])
    if obj.get("stop"):
        r.n_tokens = int(obj.get("tokens_predicted") or obj["timings"]["predicted_n"])
        return True
    return False


def stream(
    port: int,
    path: str,
    body: dict[str, Any],
    parse: Callable[[bytes, Result], bool],
    timeout: float = 600,
    started: threading.Event | None = None,
) -> Result:
    r = Result()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body).encode()
        r.t_send = time.perf_counter()
        c.request("POST", path, data, {"Content-Type": "application/json"})
        resp = c.getresponse()
        if resp.status != 200:
            r.error = f"HTTP {resp.status}: {resp.read()[:300]!r}"
            return r
        pieces = 0
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.strip()
            if not line:
                continue
            now = time.perf_counter()
            before = len(r.text)
            done = parse(line, r)
            if len(r.text) > before:
                pieces += 1
                if pieces == 1:
                    r.t_first = now
                    if started is not None:
                        started.set()
                r.t_last = now
            if done:
                break
        r.t_end = time.perf_counter()
    except (OSError, http.client.HTTPException) as exc:
        r.error = r.error or f"{type(exc).__name__}: {exc}"
    finally:
        c.close()
    return r


def concurrent(calls: list[Callable[[], Result]]) -> tuple[float, list[Result]]:
    """Release all calls at once; returns the release time and the results."""
    barrier = threading.Barrier(len(calls) + 1)
    results: list[Result | None] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    out = [r for r in results if r is not None]
    for r in out:
        if r.error:
            raise RuntimeError(r.error)
    return t0, out


_rng = random.Random(20261203)


def text(n: int) -> str:
    """n characters = n tokens (one token per ASCII letter in this vocabulary), unique."""
    return "".join(_rng.choice(string.ascii_letters) for _ in range(n))


def check(r: Result, n: int, side: str) -> Result:
    if r.error:
        raise RuntimeError(f"{side}: {r.error}")
    if r.n_tokens != n:
        raise RuntimeError(f"{side}: {r.n_tokens} tokens, expected {n}")
    return r


# --- reporting ----------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    unit: str
    mfc: list[float]
    llama: list[float]
    target: str = ""
    better: str = "higher"  # which way mfc/llama should go
    ok: Callable[[float], bool] | None = None
    load: list[float] = field(default_factory=list)
    note: str = ""

    def ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.mfc, self.llama, strict=False) if b]

    def summary(self) -> dict[str, Any]:
        ratios = self.ratios()
        med = statistics.median(ratios) if ratios else None
        return {
            "scenario": self.scenario,
            "unit": self.unit,
            "mfc": self.mfc,
            "llama_server": self.llama,
            "mfc_median": statistics.median(self.mfc) if self.mfc else None,
            "llama_median": statistics.median(self.llama) if self.llama else None,
            "paired_ratio_median": med,
            "paired_ratio_min": min(ratios) if ratios else None,
            "paired_ratio_max": max(ratios) if ratios else None,
            "target": self.target,
            "verdict": ("ok" if self.ok(med) else "MISS") if (self.ok and med is not None) else "",
            "load_average": [min(self.load), max(self.load)] if self.load else None,
            "note": self.note,
        }


ROWS: list[Row] = []


def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def print_table() -> None:
    print()
    head = (
        f"{'scenario':<44} {'unit':<9} {'mfc':>8} {'llama-srv':>9} {'ratio (min-max)':>20}"
        f"  {'target':<10} {'':<4} load"
    )
    print(head)
    print("-" * len(head))
    for row in ROWS:
        s = row.summary()
        ratio = (
            (
                f"{fmt(s['paired_ratio_median'])} ({fmt(s['paired_ratio_min'])}-"
                f"{fmt(s['paired_ratio_max'])})"
            )
            if s["paired_ratio_median"]
            else "-"
        )
        load = s["load_average"]
        print(
            f"{row.scenario:<44} {row.unit:<9} {fmt(s['mfc_median']):>8} "
            f"{fmt(s['llama_median']):>9} {ratio:>20}  {row.target:<10} {s['verdict']:<4} "
            f"{'' if not load else f'{load[0]:.1f}-{load[1]:.1f}'}"
        )
        if row.note:
            print(f"{'':<4}{row.note}")


def load1() -> float:
    return os.getloadavg()[0]


# --- scenarios ----------------------------------------------------------------------------------


class Bench:
    def __init__(
        self, args: argparse.Namespace, store: Path, blobs: dict[str, Path], exe: Path, logdir: Path
    ):
        self.args, self.store, self.blobs, self.exe, self.logdir = args, store, blobs, exe, logdir
        self.libdir = None if args.own_libs else wheel_libdir()
        self.libs_checked = False

    @contextlib.contextmanager
    def servers(self, shape: Shape, np_: int, ctx: int) -> Iterator[tuple[Mfc, Llama]]:
        """Both servers for one configuration, warmed up; stopped afterwards."""
        model = f"bench-{shape.name}:{shape.key}"
        t0 = time.perf_counter()
        m = Mfc(self.store, model, np_, ctx, self.logdir / "mfc.log")
        ll: Llama | None = None
        try:
            t_up = time.perf_counter()
            check(m.generate(text(8), 2), 2, "mfc")  # loads the model (runner start)
            m.cold = time.perf_counter() - t_up
            ll = Llama(
                self.exe, self.blobs[shape.name], np_, ctx, self.logdir / "llama.log", self.libdir
            )
            check(ll.generate(text(8), 2), 2, "llama-server")
            if not self.libs_checked:
                self.check_libs(m, ll)
            print(
                f"  [{shape.name} np={np_} ctx={ctx}] servers up in "
                f"{time.perf_counter() - t0:.1f}s (mfc first answer incl. load "
                f"{m.cold:.2f}s)",
                flush=True,
            )
            yield m, ll
        finally:
            m.stop()
            if ll:
                ll.stop()

    def check_libs(self, m: Mfc, ll: Llama) -> None:
        mine = set().union(*(mapped_libs(p) for p in m.runners()))
        theirs = mapped_libs(ll.proc.pid)

        # The wheel stores copies, not symlinks (libllama.so and libllama.so.0 are two files of
        # the same bytes): compare contents, library by library.
        def digests(paths: set[str]) -> dict[str, str]:
            return {
                Path(p).name.split(".so")[0]: hashlib.sha256(Path(p).read_bytes()).hexdigest()
                for p in paths
                if Path(p).name.startswith(("libggml", "libllama.so"))
            }

        same = digests(mine) == digests(theirs)
        print(
            f"  libraries: mfc runner {sorted(mine)}\n"
            f"             llama-server {sorted(theirs)}  -> {'same' if same else 'DIFFERENT'}"
        )
        self.libs_checked = True

    def rounds(
        self, n: int, fn_m: Callable[[int], float], fn_l: Callable[[int], float], row: Row
    ) -> Row:
        for i in range(n):
            order = [("m", fn_m), ("l", fn_l)] if i % 2 == 0 else [("l", fn_l), ("m", fn_m)]
            for side, fn in order:
                value = fn(i)
                (row.mfc if side == "m" else row.llama).append(value)
            row.load.append(load1())
        ROWS.append(row)
        s = row.summary()
        print(
            f"  {row.scenario}: mfc {fmt(s['mfc_median'])} vs llama-server "
            f"{fmt(s['llama_median'])} {row.unit}, ratio {fmt(s['paired_ratio_median'])} "
            f"(load {load1():.1f})",
            flush=True,
        )
        return row

    # single stream: decode rate, and TTFT of a 512-token prompt
    def single(self, shape: Shape, n_tokens: int, reps: int, ttft_reps: int) -> None:
        with self.servers(shape, 1, 1024) as (m, ll):

            def dm(_: int) -> float:
                return check(m.generate(text(32), n_tokens), n_tokens, "mfc").decode_rate

            def dl(_: int) -> float:
                return check(ll.generate(text(32), n_tokens), n_tokens, "llama").decode_rate

            row = self.rounds(
                reps,
                dm,
                dl,
                Row(
                    f"{shape.name}: 1 stream decode ({n_tokens} tok)",
                    "tok/s",
                    [],
                    [],
                    "≥0.97×" if shape is SMALL else "≥0.6×",
                    ok=(lambda r: r >= 0.97) if shape is SMALL else (lambda r: r >= 0.6),
                ),
            )
            if shape is TINY:
                ms_m = [1000 / x for x in row.mfc]
                ms_l = [1000 / x for x in row.llama]
                added = [a - b for a, b in zip(ms_m, ms_l, strict=True)]
                ROWS.append(
                    Row(
                        f"{shape.name}: per-token time (added = mfc - llama)",
                        "ms/tok",
                        ms_m,
                        ms_l,
                        "≤+0.1 ms",
                        "lower",
                        load=row.load,
                        note=f"added ms/token per round: "
                        f"{', '.join(f'{x:+.3f}' for x in added)}; median "
                        f"{statistics.median(added):+.3f} "
                        f"({'ok' if statistics.median(added) <= 0.1 else 'MISS'})",
                    )
                )

            def tm(_: int) -> float:
                return check(m.generate(text(511), 1), 1, "mfc").ttft * 1000

            def tl(_: int) -> float:
                return check(ll.generate(text(511), 1), 1, "llama").ttft * 1000

            self.rounds(
                ttft_reps,
                tm,
                tl,
                Row(
                    f"{shape.name}: TTFT, 512-token prompt",
                    "ms",
                    [],
                    [],
                    "≤1.05×" if shape is SMALL else "(0.4B)",
                    "lower",
                    ok=(lambda r: r <= 1.05) if shape is SMALL else None,
                ),
            )

    # N concurrent streams, unique 100-token prompts, 64 tokens each
    def aggregate(self, shape: Shape, np_: int, n_tokens: int, reps: int, ctx: int) -> None:
        with self.servers(shape, np_, ctx) as (m, ll):

            def one(side: Any, prompt: str) -> Result:
                return check(side.generate(prompt, n_tokens), n_tokens, side.side)

            def run(side: Any) -> float:
                prompts = [text(99) for _ in range(np_)]
                t0, rs = concurrent([functools.partial(one, side, p) for p in prompts])
                return sum(r.n_tokens for r in rs) / (max(r.t_end for r in rs) - t0)

            self.rounds(
                reps,
                lambda _: run(m),
                lambda _: run(ll),
                Row(
                    f"{shape.name}: {np_} streams × {n_tokens} (np {np_})",
                    "tok/s",
                    [],
                    [],
                    "≥0.95×" if shape is SMALL else "(0.4B)",
                    ok=(lambda r: r >= 0.95) if shape is SMALL else None,
                ),
            )

    # np 4: shared 1000-token system prompt, chat second turn, RSS, SIGKILL recovery
    def np4(self, shape: Shape, reps: int, kill_reps: int) -> None:
        with self.servers(shape, 4, 2048) as (m, ll):

            def shared(side: Any) -> float:
                system = text(1000)

                def first(prompt: str) -> Result:
                    if side is m:
                        return check(m.generate(prompt, 1), 1, "mfc")
                    return check(ll.generate(prompt, 1, cache=True), 1, "llama-server")

                first(system + text(20))  # seen once before
                t0, rs = concurrent([functools.partial(first, system + text(20)) for _ in range(4)])
                return max(r.t_first for r in rs) - t0

            self.rounds(
                reps,
                lambda _: shared(m),
                lambda _: shared(ll),
                Row(
                    f"{shape.name}: 4 × (1000-tok shared prefix + 20), all first tokens",
                    "s",
                    [],
                    [],
                    "≤0.2×" if shape is SMALL else "(0.4B)",
                    "lower",
                    ok=(lambda r: r <= 0.2) if shape is SMALL else None,
                ),
            )
            rss_m, rss_l = m.rss(), ll.rss()
            ROWS.append(
                Row(
                    f"{shape.name}: RSS, 4 slots × 2048 loaded",
                    "MB",
                    [rss_m],
                    [rss_l],
                    "",
                    "lower",
                    load=[load1()],
                    note=f"mfc = server {rss_mb(m.proc.pid):.0f} MB + runner "
                    f"{sum(rss_mb(p) for p in m.runners()):.0f} MB",
                )
            )
            print(f"  RSS: mfc {rss_m:.0f} MB (server + runner), llama-server {rss_l:.0f} MB")

            def chat_m(_: int) -> float:
                system, q1, q2 = text(1000), text(50), text(50)
                msgs = [{"role": "system", "content": system}, {"role": "user", "content": q1}]
                r1 = check(m.chat(msgs, 32), 32, "mfc")
                msgs += [
                    {"role": "assistant", "content": "".join(r1.text)},
                    {"role": "user", "content": q2},
                ]
                r2 = check(m.chat(msgs, 1), 1, "mfc")
                return r2.ttft / r1.ttft

            def chat_l(_: int) -> float:
                system, q1, q2 = text(1000), text(50), text(50)
                p1 = f"<system>{system}\n<user>{q1}\n<assistant>"
                r1 = check(ll.generate(p1, 32, cache=True), 32, "llama")
                p2 = p1 + "".join(r1.text) + f"\n<user>{q2}\n<assistant>"
                r2 = check(ll.generate(p2, 1, cache=True), 1, "llama")
                return r2.ttft / r1.ttft

            self.rounds(
                reps,
                chat_m,
                chat_l,
                Row(
                    f"{shape.name}: chat turn-2 TTFT / turn-1 TTFT (1000-tok system)",
                    "ratio",
                    [],
                    [],
                    "",
                    "lower",
                    note="mfc via /api/chat (template); llama-server /completion, same text, "
                    "cache_prompt on",
                ),
            )

            kills: list[float] = []
            for _ in range(kill_reps):
                kills.append(self.kill_once(m))
                m_load = load1()
            ROWS.append(
                Row(
                    f"{shape.name}: SIGKILL runner mid-stream → next answer",
                    "s",
                    kills,
                    [],
                    "",
                    "lower",
                    load=[m_load],
                    note=f"includes a fresh runner + model load; cold first answer at "
                    f"server start: {m.cold:.2f}s",
                )
            )
            print(f"  SIGKILL → next answer: {', '.join(f'{k:.2f}' for k in kills)} s")

    def kill_once(self, m: Mfc) -> float:
        out: dict[str, Result] = {}
        started = threading.Event()
        n = m.ctx - 64  # long enough to be killed mid-stream, even on the tiny model
        th = threading.Thread(target=lambda: out.setdefault("r", m.generate(text(16), n, started)))
        th.start()
        if not started.wait(120):
            raise RuntimeError("the stream to kill never started")
        for pid in m.runners():
            os.kill(pid, signal.SIGKILL)
        th.join(120)
        r = out.get("r")
        if r is None or not r.error:
            raise RuntimeError(f"expected the stream to end with an error, got {r}")
        t0 = time.perf_counter()
        nxt = m.generate(text(8), 1)
        while nxt.error:  # a 5xx while the model is reloading would count as not answered
            nxt = m.generate(text(8), 1)
        check(nxt, 1, "mfc")
        return nxt.t_first - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    ap.add_argument("--quick", action="store_true", help="3 rounds, tiny model only")
    ap.add_argument("--tiny-only", action="store_true", help="skip the 0.4B model")
    ap.add_argument("--rounds", type=int, help="rounds per scenario (default 5; quick 3)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument(
        "--own-libs",
        action="store_true",
        help="run llama-server on its own build's libraries, not the wheel's",
    )
    ap.add_argument("--only", help="comma list of: single,agg4,agg8,np4 (default all)")
    args = ap.parse_args(argv)
    tiny_only = args.tiny_only or args.quick
    rounds = args.rounds or (3 if args.quick else 5)
    only = set(args.only.split(",")) if args.only else {"single", "agg4", "agg8", "np4"}

    print(
        f"mfc serve vs llama-server; {THREADS} threads, batch {N_BATCH}, flash attention off; "
        f"load average {load1():.2f}",
        flush=True,
    )
    exe, took = llama_server.build()
    recorded = (exe.parent.parent / "BUILD_SECONDS").read_text().strip()
    print(f"llama-server: {exe} (build took {recorded} s{', cached' if not took else ''})")
    shapes = [TINY] if tiny_only else [TINY, SMALL]
    store, blobs = prepare_models(shapes)
    for name, blob in blobs.items():
        print(f"model {name}: {blob} ({blob.stat().st_size / 1e6:.0f} MB)")

    with tempfile.TemporaryDirectory(prefix="mfc-bench-serve-") as tmp:
        bench = Bench(args, store, blobs, exe, Path(tmp))
        try:
            t_start = time.perf_counter()
            if "single" in only:
                bench.single(TINY, 512, rounds if args.quick else max(rounds, 9), rounds)
            if "agg4" in only:
                bench.aggregate(TINY, 4, 512, rounds, 1024)
            if "np4" in only:
                bench.np4(TINY, rounds, 1 if args.quick else 2)
            if not tiny_only:
                if "single" in only:
                    bench.single(SMALL, 64, rounds, rounds)
                if "agg4" in only:
                    bench.aggregate(SMALL, 4, 64, rounds, 512)
                if "agg8" in only:
                    bench.aggregate(SMALL, 8, 64, rounds, 512)
                if "np4" in only:
                    bench.np4(SMALL, max(3, rounds - 2), 3)
            print(f"\nmeasured in {time.perf_counter() - t_start:.0f}s")
        except BaseException:
            for log in sorted(Path(tmp).glob("*.log")):
                print(
                    f"--- tail of {log.name}:\n"
                    + "\n".join(log.read_text(errors="replace").splitlines()[-25:]),
                    file=sys.stderr,
                )
            print_table()
            raise
    print_table()
    result = {
        "threads": THREADS,
        "llama_server": str(exe),
        "llama_server_build_s": recorded,
        "rows": [r.summary() for r in ROWS],
        "load_average_end": load1(),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
        print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
