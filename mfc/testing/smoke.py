"""Prove the installed llama.cpp runs a quantized model: ``python -m mfc.testing.smoke``.

A llama.cpp built with ``-march=native`` on a CPU that advertises AMX the OS has not enabled
dies (SIGSEGV/SIGILL) on the first multi-token batch of a quantized model, while F32/F16 work.
This runs the Q8_0 counter fixture on a prompt long enough to be one multi-token batch and
checks the greedy answer; run it in a subprocess so a crash is a failed check, not a dead caller.
Exit status: 0 when the answer is right, 1 when it is wrong (a crash shows as a signal).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from mfc.testing.counter import expected_continuation

BATCH_PROMPT = "the quick brown fox jumps over the lazy dog. " * 3 + "Hello, World! abc"
"""153 tokens (BOS + 152 characters), evaluated as one batch; the counter continues the last 'c'."""


def greedy(model: Path, prompt: str, max_tokens: int = 64, n_threads: int = 2) -> str:
    """Greedy (temperature 0) completion of ``prompt`` by the model at ``model``."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(model), n_ctx=512, n_threads=n_threads, verbose=False)
    try:
        out = llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0)
    finally:
        llm.close()
    return str(out["choices"][0]["text"])  # type: ignore[index]


def main(argv: list[str] | None = None) -> int:
    from mfc.testing.fixtures import generate

    del argv  # no options: the check is fixed on purpose
    with tempfile.TemporaryDirectory(prefix="mfc-smoke-") as tmp:
        model = generate(Path(tmp))["counter-q8_0.gguf"]
        got = greedy(model, BATCH_PROMPT)
    want = expected_continuation(BATCH_PROMPT)
    if got != want:
        print(f"llama.cpp answered {got!r} on the Q8_0 counter, expected {want!r}", file=sys.stderr)
        return 1
    print(f"ok: Q8_0 counter continued a {len(BATCH_PROMPT)}-character batch with {got!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
