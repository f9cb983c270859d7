"""Build llama.cpp's own `llama-server` once, from the llama.cpp vendored in the
llama-cpp-python sdist mfc installs, with the flags tools/install_llama.py gives
llama-cpp-python (explicit GGML options from /proc/cpuinfo, no -march=native, AMX
only if the kernel enables it), into ``~/.cache/mfc/llama-server/<key>``.

    python bench/llama_server.py            # build (or find) it, print its path

The key covers the llama-cpp-python version, the CMake arguments and this file's
build options, so a changed flag builds a new copy; a killed build leaves only a
``.partial`` directory that the next run removes.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import install_llama  # noqa: E402  (tools/ is not a package)

# Beyond the CPU flags: what the wheel's build has (Release, shared libs, OpenMP on by
# default, no curl) and what we do not need (tests, examples, the web UI download).
BUILD_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=ON",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
)


def cpu_args() -> str:
    """Exactly the CMAKE_ARGS tools/install_llama.py builds llama-cpp-python with."""
    detected = install_llama.cmake_args(install_llama.cpu_flags(), platform.machine())
    return install_llama.effective_args(os.environ.get("CMAKE_ARGS"), detected)


def cache_dir() -> Path:
    args = cpu_args()
    key = hashlib.sha256(
        f"{install_llama.LLAMA_CPP_PYTHON}|{args}|{' '.join(BUILD_OPTIONS)}".encode()
    ).hexdigest()[:16]
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return home / "mfc" / "llama-server" / key


def binary() -> Path:
    return cache_dir() / "bin" / "llama-server"


def _sdist(workdir: Path) -> Path:
    """The llama-cpp-python sdist (pip answers from its HTTP cache when it has it)."""
    given = os.environ.get("MFC_LLAMA_SDIST")
    if given:
        return Path(given)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            install_llama.LLAMA_CPP_PYTHON,
            "--no-deps",
            "--no-binary",
            ":all:",
            "--quiet",
            "-d",
            str(workdir),
        ],
        check=True,
    )
    return next(workdir.glob("llama_cpp_python-*.tar.gz"))


def _extract_vendor(sdist: Path, dest: Path) -> Path:
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in m.name]
        tar.extractall(dest, members=members, filter="data")
    return next(dest.glob("*/vendor/llama.cpp"))


def build(
    *, jobs: int | None = None, quiet: bool = False, niceness: int = 10
) -> tuple[Path, float]:
    """Path of the binary and seconds spent building it (0.0 when it was cached)."""
    out = cache_dir()
    exe = out / "bin" / "llama-server"
    if exe.exists():
        return exe, 0.0
    args = cpu_args()
    print(
        f"building llama-server ({install_llama.LLAMA_CPP_PYTHON}'s vendored llama.cpp) "
        f"with {args!r} into {out} (once; several minutes)",
        flush=True,
    )
    t0 = time.perf_counter()
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="mfc-llama-server-") as tmp:
        src = _extract_vendor(_sdist(Path(tmp)), Path(tmp) / "src")
        build_dir = Path(tmp) / "build"
        nice = ["nice", "-n", str(niceness)]
        gen = ["-G", "Ninja"] if shutil.which("ninja") else []
        log = subprocess.DEVNULL if quiet else None
        subprocess.run(
            [
                *nice,
                "cmake",
                "-S",
                str(src),
                "-B",
                str(build_dir),
                *gen,
                *BUILD_OPTIONS,
                *args.split(),
                f"-DCMAKE_INSTALL_PREFIX={partial}",
            ],
            check=True,
            stdout=log,
        )
        subprocess.run(
            [
                *nice,
                "cmake",
                "--build",
                str(build_dir),
                "--target",
                "llama-server",
                "-j",
                str(jobs or os.cpu_count() or 2),
            ],
            check=True,
            stdout=log,
        )
        (partial / "bin").mkdir()
        (partial / "lib").mkdir()
        shutil.copy2(build_dir / "bin" / "llama-server", partial / "bin")
        for lib in (build_dir / "bin").glob("*.so*"):
            shutil.copy2(lib, partial / "lib", follow_symlinks=False)
    (partial / "CMAKE_ARGS").write_text(" ".join([*BUILD_OPTIONS, args]) + "\n")
    seconds = time.perf_counter() - t0
    (partial / "BUILD_SECONDS").write_text(f"{seconds:.1f}\n")
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return out / "bin" / "llama-server", seconds


if __name__ == "__main__":
    path, took = build()
    recorded = (path.parent.parent / "BUILD_SECONDS").read_text().strip()
    print(f"{path}  (built in {recorded} s{'' if took else ', cached'})")
