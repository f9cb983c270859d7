"""The cost of structured outputs: decode time per token with a grammar vs without.

Runs the engine directly (mfc.runtime.engine.Engine, in this process: the runner process and
HTTP add the same per-token cost with or without a grammar), greedy, same prompt, same token
count, in alternating rounds (the order rotates each round); ratios are paired per round,
constrained / unconstrained time per token (eval_duration / eval_count). Target: ≤ 1.2×.

Modes: ``free`` (no grammar), ``json`` (format "json") and ``schema`` (a JSON schema: nested
object with an enum, an array with min/max items, $defs/$ref), each with the fast path
(`Engine(grammar_fast_path=True)`, the default: sample, check the one token, apply the grammar to
all candidates only on rejection) and without it (``…-full``: the grammar applied to every
candidate at every token, what mfc did before and what a grammar-first sampler costs).

Two models, and they measure different things — read them apart:
- ``small``: bench/serve.py's ~0.4B random llama (32000-token vocabulary, Q8_0). Its unconstrained
  choice is garbage, so the grammar rejects nearly every token: this is the *worst case* of the
  fast path (check + full apply + resample on almost every token).
- ``counter``: the counter fixture (354 tokens) after "!", whose unconstrained output (`"#$%…`) is
  what the schema (a string) allows: the *acceptance case*, where the fast path only checks one
  token. Its vocabulary is tiny, so the script also times, on the small model's 32k vocabulary,
  the two grammar operations per token: the one-token check and the whole-vocabulary apply.

    python bench/structured.py               # both models, 5 rounds (~3 min on 2 cores)
    python bench/structured.py --rounds 3 --tokens 32
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serve as bench_serve  # the cached ~0.4B model

from mfc.runtime.engine import Engine, _Candidates
from mfc.runtime.options import LoadOptions, SamplingOptions
from mfc.runtime.structured import grammar_for
from mfc.testing.fixtures import generate as write_fixtures

SCHEMA: dict[str, Any] = {
    "$defs": {
        "Item": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 12},
                "qty": {"type": "integer"},
            },
            "required": ["name", "qty"],
        }
    },
    "type": "object",
    "properties": {
        "status": {"enum": ["ok", "partial", "failed"]},
        "owner": {
            "type": "object",
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "admin": {"type": "boolean"},
            },
            "required": ["id", "admin"],
        },
        "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "minItems": 1, "maxItems": 4},
    },
    "required": ["status", "owner", "items"],
}
# (unbounded: a maxLength of n is n nested optional rules, which costs the grammar's own
# stack bookkeeping on every accepted token, fast path or not)
COUNTER_SCHEMA = {"type": "string"}


def load1() -> float:
    return os.getloadavg()[0]


def per_token_ms(engine: Engine, prompt: str, n: int, grammar: str | None) -> tuple[float, int]:
    gen = engine.generate(prompt, SamplingOptions(temperature=0.0, num_predict=n), grammar=grammar)
    gen.result()
    assert gen.stats is not None
    return gen.stats.eval_duration / max(gen.stats.eval_count, 1) / 1e6, gen.stats.eval_count


def rounds(
    label: str,
    model: Path,
    load: LoadOptions,
    prompt: str,
    grammars: dict[str, str | None],
    n: int,
    reps: int,
) -> None:
    fast = Engine(model, load)
    full = Engine(model, load, grammar_fast_path=False)
    try:
        modes = [("free", fast, None)]
        for name, g in grammars.items():
            modes += [(name, fast, g), (f"{name}-full", full, g)]
        for _, e, g in modes:  # warm-up (and the grammar's first compilation)
            per_token_ms(e, prompt, 8, g)
        times: dict[str, list[float]] = {m[0]: [] for m in modes}
        counts: dict[str, int] = {}
        for r in range(reps):
            order = modes[r % len(modes) :] + modes[: r % len(modes)]
            for name, e, g in order:
                ms, count = per_token_ms(e, prompt, n, g)
                times[name].append(ms)
                counts[name] = count
        print(f"\n{label}  ({reps} rounds, {n} tokens, load1 {load1():.2f})")
        print(f"  {'mode':<14}{'ms/token':>10}{'tokens':>8}{'ratio vs free (paired median)':>32}")
        for name, _, _ in modes:
            med = statistics.median(times[name])
            ratios = [t / f for t, f in zip(times[name], times["free"], strict=True)]
            ratio = statistics.median(ratios)
            spread = f"[{min(ratios):.2f}–{max(ratios):.2f}]"
            print(f"  {name:<14}{med:>10.3f}{counts[name]:>8}{ratio:>20.2f}× {spread}")
    finally:
        fast.close()
        full.close()


def grammar_ops(model: Path, load: LoadOptions, reps: int = 200) -> None:
    """Per-token cost of the two grammar operations on a 32k vocabulary, mid-answer (inside a
    string of the schema, where most vocabulary entries must be matched character by
    character): the fast path's one-token check vs applying the grammar to every candidate."""
    import llama_cpp

    engine = Engine(model, load)
    try:

        def measure() -> tuple[float, float, float]:
            vocab = engine._vocab
            gbnf = grammar_for(SCHEMA)
            assert gbnf is not None
            g = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
            for token in engine._tokenize('{"status": "ok", "owner": {"id": "')[1:]:
                llama_cpp.llama_sampler_accept(g, token)
            cand = _Candidates(engine._n_vocab)
            logits = (ctypes.c_float * engine._n_vocab)()
            t0 = time.perf_counter_ns()
            for _ in range(reps):
                cand.fill(logits)
            fill = (time.perf_counter_ns() - t0) / reps / 1e6
            t0 = time.perf_counter_ns()
            for _ in range(reps):
                cand.fill(logits)
                llama_cpp.llama_sampler_apply(g, cand.ref)
            apply = (time.perf_counter_ns() - t0) / reps / 1e6
            allowed = engine._tokenize("a")[-1]
            t0 = time.perf_counter_ns()
            for _ in range(reps):
                cand.allowed(g, allowed)
            one = (time.perf_counter_ns() - t0) / reps / 1e6
            llama_cpp.llama_sampler_free(g)
            return fill, apply, one

        fill, apply, one = engine._call(measure)
        free, _ = per_token_ms(engine, "The answer is", 32, None)
    finally:
        engine.close()
    print(
        f"\ngrammar operations on the small model's {32000}-token vocabulary (load1 {load1():.2f})"
    )
    print(f"  fill the candidate array from the logits   {fill:8.3f} ms")
    print(f"  fill + apply the grammar to all candidates {apply:8.3f} ms")
    print(f"  check one token (the fast path, accepted)  {one:8.3f} ms")
    print(f"  unconstrained decode, per token            {free:8.3f} ms")
    print(
        f"  → estimated ratio when the model's choice conforms: "
        f"{(free + fill + one) / free:.3f}× (fast path) vs {(free + apply) / free:.3f}× (full)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--counter-only", action="store_true", help="only the acceptance case")
    args = parser.parse_args()
    threads = max((os.cpu_count() or 2) // 2, 1)
    if not args.counter_only:
        small_model(args, threads)
    counter_model(args)


def small_model(args: argparse.Namespace, threads: int) -> None:
    _, blobs = bench_serve.prepare_models([bench_serve.SMALL])
    small = LoadOptions(1024, 512, threads, n_gpu_layers=0, main_gpu=0, use_mmap=True)
    grammars = {"json": grammar_for("json"), "schema": grammar_for(SCHEMA)}
    rounds(
        "small (~0.4B, 32k vocab, random weights: WORST CASE, nearly every token rejected)",
        blobs["small"],
        small,
        "The answer is",
        grammars,
        args.tokens,
        args.rounds,
    )
    grammar_ops(blobs["small"], small)


def counter_model(args: argparse.Namespace) -> None:
    fixtures = bench_serve.CACHE / "counter"
    if not (fixtures / "counter-f32.gguf").exists():
        write_fixtures(fixtures)
    tiny = LoadOptions(512, 512, 1, n_gpu_layers=0, main_gpu=0, use_mmap=True)
    rounds(
        "counter (354 tokens, output conforms to the schema: ACCEPTANCE CASE)",
        fixtures / "counter-f32.gguf",
        tiny,
        "!",
        {"schema": grammar_for(COUNTER_SCHEMA)},
        min(args.tokens, 56),  # "#$%… stays a valid string for 57 tokens
        args.rounds * 4,
    )


if __name__ == "__main__":
    main()
