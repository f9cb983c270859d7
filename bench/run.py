"""Decode speed of the `mfc run` path vs llama-cpp-python called directly.

Same model file, same threads, same prompt, greedy, in the same bench run;
the two sides alternate so machine noise hits both alike, and each
measurement runs in a fresh process (llama.cpp's OpenMP thread team from one
side, left in the process, slows the other side's thread by ~30% when the
threads use every core). The figure is the
ratio of best-of-N decode rates (tokens/s after the first token, measured
where the caller receives the tokens); the median ratio is printed too.
Target: >= 0.97.

The model is generated here (not committed): a llama-architecture GGUF with
seeded random weights, big enough (~150 MB f16 by default) that a decode step
costs what it does on a real small model. EOS can never win greedy sampling,
so both sides generate exactly the same number of tokens.

    python bench/run.py [--tokens 128] [--reps 8] [--threads N] [--layers 8] [--embd 768]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gguf
import numpy as np

from mfc.testing import counter
from mfc.testing.fixtures import add_counter_tokenizer, add_llama_hparams, write_gguf


def write_model(path: Path, *, n_embd: int, n_layer: int, n_ff: int, n_head: int) -> None:
    """A random-weight llama model using the counter fixture's vocabulary."""
    rng = np.random.default_rng(1234)
    n_vocab = len(counter.vocab().tokens)
    w = gguf.GGUFWriter(path=None, arch="llama")
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name("mfc-bench-random")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_llama_hparams(
        w,
        n_vocab=n_vocab,
        context_length=2048,
        n_embd=n_embd,
        n_layer=n_layer,
        n_ff=n_ff,
        n_head=n_head,
        rms_eps=1e-5,
    )
    add_counter_tokenizer(w)
    w.add_add_space_prefix(False)

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)

    w.add_tensor("token_embd.weight", mat(n_vocab, n_embd))
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        for t in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(f"blk.{i}.{t}.weight", mat(n_embd, n_embd))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", mat(n_ff, n_embd))
        w.add_tensor(f"blk.{i}.ffn_up.weight", mat(n_ff, n_embd))
        w.add_tensor(f"blk.{i}.ffn_down.weight", mat(n_embd, n_ff))
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    out = mat(n_vocab, n_embd)
    out[: counter.EOS + 1] = 0  # control tokens score 0: never the greedy pick
    w.add_tensor("output.weight", out)
    write_gguf(w, path)


PROMPT = "The quick brown fox jumps over the lazy dog. "


def direct(path: Path, threads: int, n_tokens: int) -> float:
    """llama-cpp-python's own generate loop, called from this thread."""
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=2048,
        n_batch=512,
        n_ubatch=512,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    try:
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        tokens = llm.tokenize(PROMPT.encode(), add_bos=True, special=True)
        count, first = 0, 0.0
        for token in llm.generate(tokens, temp=0.0, top_k=40, top_p=0.9, min_p=0.0):
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            piece = ctypes.create_string_buffer(32)  # as Llama's own token_to_piece
            llama_cpp.llama_token_to_piece(vocab, token, piece, 32, 0, False)
            count += 1
            if count == 1:
                first = time.perf_counter()
            if count == n_tokens:
                break
        return (count - 1) / (time.perf_counter() - first)
    finally:
        llm.close()


def via_mfc(path: Path, threads: int, n_tokens: int) -> float:
    """The `mfc run` path: Session -> Engine step loop (one sequence) -> streamed chunks."""
    from mfc.runtime.model import image_from_gguf
    from mfc.runtime.session import Session

    params = {
        "temperature": 0.0,
        "num_predict": n_tokens,
        "num_thread": threads,
        "num_ctx": 2048,
    }
    session = Session(image_from_gguf(path, params=params), env={})
    try:
        session.template = "{{ range .Messages }}{{ .Content }}{{ end }}"  # raw text, as direct
        turn = session.ask(PROMPT)
        first = 0.0
        for i, _ in enumerate(turn):
            if i == 0:
                first = time.perf_counter()
        end = time.perf_counter()
        assert turn.stats is not None
        count = turn.stats.eval_count
        if count != n_tokens:
            raise SystemExit(f"mfc generated {count} tokens, expected {n_tokens}")
        return (count - 1) / (end - first)
    finally:
        session.close()


def measure_in_subprocess(side: str, path: Path, threads: int, n_tokens: int) -> float:
    """One measurement in a fresh process: llama.cpp's OpenMP thread teams from
    one side must not linger in the other side's process."""
    cmd = [sys.executable, __file__, "--side", side, "--model", str(path)]
    out = subprocess.run(
        [*cmd, "--threads", str(threads), "--tokens", str(n_tokens)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--embd", type=int, default=768)
    ap.add_argument("--model", type=Path, help="use this GGUF instead of generating one")
    ap.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # one measurement
    args = ap.parse_args(argv)

    if args.side:
        print(SIDES[args.side](args.model, args.threads, args.tokens))
        return 0
    with tempfile.TemporaryDirectory(prefix="mfc-bench-run-") as tmp:
        path = args.model
        if path is None:
            path = Path(tmp) / "random.gguf"
            t0 = time.perf_counter()
            write_model(path, n_embd=args.embd, n_layer=args.layers, n_ff=4 * args.embd, n_head=12)
            size = path.stat().st_size / 1e6
            print(f"model: {size:.0f} MB random llama f16 ({time.perf_counter() - t0:.1f}s)")
        print(f"threads: {args.threads}, tokens: {args.tokens}, reps: {args.reps}")
        measure_in_subprocess("llama-cpp-python", path, args.threads, 8)  # warm the page cache
        rates: dict[str, list[float]] = {name: [] for name in SIDES}
        for rep in range(args.reps):
            order = list(SIDES) if rep % 2 == 0 else list(reversed(SIDES))
            for name in order:
                rates[name].append(measure_in_subprocess(name, path, args.threads, args.tokens))
        for name, values in rates.items():
            shown = " ".join(f"{r:.1f}" for r in values)
            print(
                f"{name:>17}: best {max(values):7.2f}  median {statistics.median(values):7.2f}"
                f" tok/s  [{shown}]"
            )
        # Best-of-N is the figure: other processes only ever slow a run down, so
        # the fastest run of each side is the least disturbed one.
        ratio = max(rates["mfc run"]) / max(rates["llama-cpp-python"])
        median_ratio = statistics.median(rates["mfc run"]) / statistics.median(
            rates["llama-cpp-python"]
        )
        # Each rep measures both sides back to back: the median of those per-rep ratios
        # is the steadiest figure when the machine is shared.
        paired = statistics.median(
            m / d for m, d in zip(rates["mfc run"], rates["llama-cpp-python"], strict=True)
        )
        verdict = "ok" if ratio >= 0.97 else "BELOW TARGET"
        print(
            f"ratio mfc/direct: {ratio:.3f} best-of-{args.reps} (median {median_ratio:.3f},"
            f" median of paired ratios {paired:.3f})"
        )
        print(f"target >= 0.97: {verdict}; load average now {os.getloadavg()[0]:.2f}")
    return 0


SIDES = {"llama-cpp-python": direct, "mfc run": via_mfc}


if __name__ == "__main__":
    sys.exit(main())
