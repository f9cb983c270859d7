"""``--quantize TYPE``: llama.cpp's quantizer, run in a child process.

Why a child process: ``llama_model_quantize`` aborts the whole process on some
bad inputs and logs straight to stderr; in a child, a failure becomes a build
error with the log attached, and ``mfc build`` never imports llama_cpp itself.
The output is deterministic (same input and type → same bytes), so quantized
builds stay reproducible.

    python -m mfc.build.quantize SRC DST TYPE
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Types a float base can be quantized from (the quantizer refuses to requantize).
SOURCE_TYPES = frozenset({"F32", "F16", "BF16"})


class QuantizeError(Exception):
    pass


def quant_types() -> tuple[str, ...]:
    """Every target type llama.cpp's quantizer takes, in Ollama's spelling (Q4_K_M, Q8_0, …)."""
    from gguf import LlamaFileType

    names = []
    for ft in LlamaFileType:
        if ft.name == "GUESSED":
            continue
        names.append("F32" if ft.name == "ALL_F32" else ft.name.removeprefix("MOSTLY_"))
    return tuple(names)


def normalize_type(text: str) -> str | None:
    """``q4_k_m`` → ``Q4_K_M``; None when llama.cpp has no such type."""
    wanted = text.strip().upper()
    return wanted if wanted in quant_types() else None


def quantize(src: Path, dst: Path, qtype: str) -> None:
    """Write ``src`` quantized to ``qtype`` at ``dst``; QuantizeError with llama.cpp's log."""
    proc = subprocess.run(
        [sys.executable, "-m", "mfc.build.quantize", str(src), str(dst), qtype],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not dst.is_file():
        log = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
        detail = "\n".join(log) if log else f"exit status {proc.returncode}"
        raise QuantizeError(detail)


def _run(src: str, dst: str, qtype: str) -> int:
    import ctypes

    import llama_cpp

    const = "LLAMA_FTYPE_ALL_F32" if qtype == "F32" else f"LLAMA_FTYPE_MOSTLY_{qtype}"
    ftype = getattr(llama_cpp, const, None)
    if ftype is None:
        print(f"this llama-cpp-python has no {const}", file=sys.stderr)
        return 2
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    return int(llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(1 if _run(*sys.argv[1:]) else 0)
