"""``--quantize TYPE``: llama.cpp's quantizer, run in a child process.

Why a child process: ``llama_model_quantize`` aborts the whole process on some
bad inputs and logs straight to stderr; in a child, a failure becomes a build
error with the log attached, and ``mfc build`` never imports llama_cpp itself.
The output is deterministic (same input and type → same bytes), so quantized
builds stay reproducible.

    python -m mfc.build.quantize SRC DST TYPE
    python -m mfc.build.quantize --probe        (JSON list of the types it takes)
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

# Types a float base can be quantized from (the quantizer refuses to requantize).
SOURCE_TYPES = frozenset({"F32", "F16", "BF16"})


class QuantizeError(Exception):
    pass


def _spelling(const: str) -> str:
    """`LLAMA_FTYPE_MOSTLY_Q4_K_M` or gguf's `MOSTLY_Q4_K_M` → `Q4_K_M`; `ALL_F32` → `F32`."""
    name = const.removeprefix("LLAMA_FTYPE_")
    return "F32" if name == "ALL_F32" else name.removeprefix("MOSTLY_")


def quant_types() -> tuple[str, ...]:
    """Every file type gguf-py knows, in Ollama's spelling (Q4_K_M, Q8_0, …).

    A static list that needs no llama_cpp import; the installed llama.cpp may
    take fewer (see ``supported_types``) or a few more.
    """
    from gguf import LlamaFileType

    return tuple(_spelling(ft.name) for ft in LlamaFileType if ft.name != "GUESSED")


def normalize_type(text: str) -> str | None:
    """``q4_k_m`` → ``Q4_K_M``; None when gguf-py knows no such type."""
    wanted = text.strip().upper()
    return wanted if wanted in quant_types() else None


@functools.cache
def supported_types() -> tuple[str, ...] | None:
    """The types the installed llama.cpp really quantizes to; None if it cannot be asked.

    llama-cpp-python may define an ``LLAMA_FTYPE_*`` constant its compiled
    library rejects ("invalid output file type 39" for NVFP4), so a child
    process tries each constant on a path that does not exist: the library
    checks the type before it opens the input. Run only for ``--quantize``.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "mfc.build.quantize", "--probe"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return None
    try:
        names = json.loads(proc.stdout)
    except ValueError:
        return None
    return tuple(str(n) for n in names)


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


def _probe() -> list[str]:
    """Names of the ``LLAMA_FTYPE_*`` types this library does not reject outright."""
    import ctypes

    import llama_cpp

    messages: list[str] = []

    @llama_cpp.llama_log_callback
    def collect(level: int, text: bytes, user: object) -> None:
        messages.append(text.decode("utf-8", "replace"))

    llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
    missing = b"/nonexistent/mfc-probe.gguf"
    accepted = []
    for const in sorted(n for n in dir(llama_cpp) if n.startswith("LLAMA_FTYPE_")):
        if const == "LLAMA_FTYPE_GUESSED":
            continue
        messages.clear()
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, const)
        llama_cpp.llama_model_quantize(missing, missing, ctypes.byref(params))
        if "invalid output file type" not in "".join(messages):
            accepted.append(_spelling(const))
    return accepted


if __name__ == "__main__":
    if sys.argv[1:] == ["--probe"]:
        print(json.dumps(_probe()))
        sys.exit(0)
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(1 if _run(*sys.argv[1:]) else 0)
