"""Install llama-cpp-python built for the CPU the OS really enables.

Why: llama.cpp's default source build uses ``-march=native``, which trusts CPUID.
On machines whose CPU advertises AMX while the kernel does not enable it, every
quantized model then dies with SIGILL.  We read the features the *kernel* reports
in ``/proc/cpuinfo`` and pass explicit GGML flags instead.

The built wheel is kept in a cache keyed by (version, flags, Python tag), so a
fresh clone or CI run on the same machine installs in seconds.  Set ``CMAKE_ARGS``
yourself (e.g. ``-DGGML_CUDA=on``) to override the detected flags.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"

# (GGML cmake option, /proc/cpuinfo flag that must be present for it)
X86_FEATURES = (
    ("GGML_SSE42", "sse4_2"),
    ("GGML_AVX", "avx"),
    ("GGML_AVX2", "avx2"),
    ("GGML_FMA", "fma"),
    ("GGML_F16C", "f16c"),
    ("GGML_BMI2", "bmi2"),
    ("GGML_AVX_VNNI", "avx_vnni"),
    ("GGML_AVX512", "avx512f"),
    ("GGML_AVX512_VBMI", "avx512vbmi"),
    ("GGML_AVX512_VNNI", "avx512_vnni"),
    ("GGML_AVX512_BF16", "avx512_bf16"),
    ("GGML_AMX_TILE", "amx_tile"),
    ("GGML_AMX_INT8", "amx_int8"),
    ("GGML_AMX_BF16", "amx_bf16"),
)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """Features the kernel enabled (it hides AMX when it has not enabled XTILEDATA)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cmake_args(flags: frozenset[str], machine: str) -> str:
    """Explicit, non-native flags for x86-64; other CPUs keep llama.cpp's defaults."""
    if machine not in ("x86_64", "AMD64") or not flags:
        return ""
    options = ["-DGGML_NATIVE=OFF"]
    options += [f"-D{opt}={'ON' if flag in flags else 'OFF'}" for opt, flag in X86_FEATURES]
    return " ".join(options)


def effective_args(user_args: str | None, detected: str) -> str:
    """The user's CMAKE_ARGS come after the detected flags, so theirs win (`-D` last wins)
    while e.g. `-DGGML_CUDA=on` still keeps the safe CPU flags."""
    return " ".join(part for part in (detected, (user_args or "").strip()) if part)


def wheel_key(args: str, python_tag: str) -> str:
    return hashlib.sha256(f"{LLAMA_CPP_PYTHON}|{args}|{python_tag}".encode()).hexdigest()[:16]


def build_wheel(args: str, wheel_dir: Path, pip: list[str]) -> None:
    """Compile once into ``<dir>.partial`` and rename, so a killed build is never reused."""
    print(f"building {LLAMA_CPP_PYTHON} with CMAKE_ARGS={args!r} (a few minutes, once)")
    tmp = wheel_dir.with_name(wheel_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(wheel_dir, ignore_errors=True)  # a dir without a wheel is debris
    env = dict(os.environ, CMAKE_ARGS=args, FORCE_CMAKE="1")
    command = [*pip, "wheel", "--no-deps", "--no-cache-dir", "--no-binary", "llama-cpp-python"]
    subprocess.run([*command, "-w", str(tmp), LLAMA_CPP_PYTHON], check=True, env=env)
    tmp.rename(wheel_dir)


def main() -> int:
    detected = cmake_args(cpu_flags(), platform.machine())
    args = effective_args(os.environ.get("CMAKE_ARGS"), detected)
    key = wheel_key(
        args, f"cp{sys.version_info.major}{sys.version_info.minor}-{platform.machine()}"
    )
    cache_home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    wheel_dir = cache_home / "mfc" / "llama-wheels" / key
    # The venv remembers which build it has: same version, other flags must still reinstall.
    marker = Path(sys.prefix) / ".mfc-llama-key"
    if marker.exists() and marker.read_text().strip() == key:
        return 0
    pip = [sys.executable, "-m", "pip"]
    if not list(wheel_dir.glob("*.whl")):
        build_wheel(args, wheel_dir, pip)
    (wheel_dir / "CMAKE_ARGS").write_text(args + "\n")
    wheels = [str(w) for w in sorted(wheel_dir.glob("*.whl"))]
    subprocess.run([*pip, "install", "--quiet", *wheels], check=True)
    subprocess.run(
        [*pip, "install", "--quiet", "--force-reinstall", "--no-deps", *wheels], check=True
    )
    marker.write_text(key + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
