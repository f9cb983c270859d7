"""The llama.cpp build flags come from what the kernel enables, never from CPUID alone."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "tools" / "install_llama.py"
_spec = importlib.util.spec_from_file_location("install_llama", _PATH)
assert _spec and _spec.loader
install_llama = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(install_llama)

AVX512_NO_AMX = "fpu sse4_2 avx avx2 fma f16c bmi2 avx512f avx512_vnni avx512_bf16 avx512vbmi"
WITH_AMX = AVX512_NO_AMX + " amx_tile amx_int8 amx_bf16"


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    return path


def _options(args: str) -> dict[str, str]:
    return dict(part[2:].split("=", 1) for part in args.split())


def test_amx_is_off_when_the_kernel_does_not_list_it(tmp_path: Path) -> None:
    options = _options(
        install_llama.cmake_args(
            install_llama.cpu_flags(_cpuinfo(tmp_path, AVX512_NO_AMX)), "x86_64"
        )
    )
    assert options["GGML_NATIVE"] == "OFF"  # -march=native would trust CPUID and emit AMX
    assert options["GGML_AMX_TILE"] == options["GGML_AMX_INT8"] == "OFF"
    assert options["GGML_AVX512"] == options["GGML_AVX512_VNNI"] == options["GGML_AVX2"] == "ON"


def test_amx_is_on_when_the_kernel_enables_it(tmp_path: Path) -> None:
    flags = install_llama.cpu_flags(_cpuinfo(tmp_path, WITH_AMX))
    options = _options(install_llama.cmake_args(flags, "x86_64"))
    assert options["GGML_AMX_TILE"] == options["GGML_AMX_INT8"] == "ON"


def test_avx2_only_cpu_gets_no_avx512(tmp_path: Path) -> None:
    flags = install_llama.cpu_flags(_cpuinfo(tmp_path, "sse4_2 avx avx2 fma f16c"))
    options = _options(install_llama.cmake_args(flags, "x86_64"))
    assert options["GGML_AVX2"] == "ON"
    assert options["GGML_AVX512"] == "OFF"


@pytest.mark.parametrize("machine", ["aarch64", "arm64"])
def test_other_cpus_keep_llama_defaults(tmp_path: Path, machine: str) -> None:
    flags = install_llama.cpu_flags(_cpuinfo(tmp_path, "fp asimd"))
    assert install_llama.cmake_args(flags, machine) == ""


def test_unreadable_cpuinfo_means_no_flags(tmp_path: Path) -> None:
    assert install_llama.cpu_flags(tmp_path / "missing") == frozenset()
    assert install_llama.cmake_args(frozenset(), "x86_64") == ""


def test_user_args_come_last_so_they_win() -> None:
    args = install_llama.effective_args("-DGGML_CUDA=on -DGGML_AVX512=OFF", "-DGGML_AVX512=ON")
    assert args == "-DGGML_AVX512=ON -DGGML_CUDA=on -DGGML_AVX512=OFF"
    assert install_llama.effective_args(None, "-DX=1") == "-DX=1"
    assert install_llama.effective_args("  ", "-DX=1") == "-DX=1"


def test_other_flags_get_another_wheel() -> None:
    a = install_llama.wheel_key("-DGGML_AVX512=ON", "cp311-x86_64")
    b = install_llama.wheel_key("-DGGML_AVX512=OFF", "cp311-x86_64")
    assert a != b
    assert a == install_llama.wheel_key("-DGGML_AVX512=ON", "cp311-x86_64")
