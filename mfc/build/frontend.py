"""The builder's one door into the front-end: Modelfile text → checked ``ModelSpec``.

Errors stop the build (``DiagnosticError`` carrying every diagnostic of the
file); warnings are passed on so the CLI prints them with the build's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mfc.diagnostics.diagnostic import Diagnostic, DiagnosticError
from mfc.modelfile.check import CheckResult
from mfc.modelfile.spec import ModelSpec


def _finish(result: CheckResult) -> tuple[ModelSpec, tuple[Diagnostic, ...]]:
    if result.spec is None or not result.ok:
        raise DiagnosticError(result.diagnostics)
    return result.spec, result.diagnostics


def check_file(
    path: Path, build_args: Mapping[str, str]
) -> tuple[ModelSpec, tuple[Diagnostic, ...]]:
    from mfc.modelfile.check import check_file as _check_file

    return _finish(_check_file(path, build_args=dict(build_args)))


def check_text(
    text: str, source: str, build_args: Mapping[str, str], base_dir: Path | None = None
) -> tuple[ModelSpec, tuple[Diagnostic, ...]]:
    from mfc.modelfile.check import check_text as _check_text

    return _finish(_check_text(text, source, build_args=dict(build_args), base_dir=base_dir))
