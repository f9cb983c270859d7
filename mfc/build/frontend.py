"""The builder's one door into the front-end: Modelfile text → checked ``ModelSpec``.

Errors stop the build (``DiagnosticError`` carrying every diagnostic of the
file); warnings are passed on so the CLI prints them with the build's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mfc.modelfile.diagnostics import Diagnostic, DiagnosticError, has_errors
from mfc.modelfile.spec import ModelSpec


def _split(result: Any) -> tuple[ModelSpec | None, tuple[Diagnostic, ...]]:
    if isinstance(result, ModelSpec):
        return result, ()
    spec, diagnostics = result
    return spec, tuple(diagnostics)


def _finish(result: Any) -> tuple[ModelSpec, tuple[Diagnostic, ...]]:
    spec, diagnostics = _split(result)
    if spec is None or has_errors(diagnostics):
        raise DiagnosticError(diagnostics)
    return spec, tuple(d for d in diagnostics if not d.is_error)


def check_file(
    path: Path, build_args: Mapping[str, str]
) -> tuple[ModelSpec, tuple[Diagnostic, ...]]:
    from mfc.modelfile import check_file as _check_file

    return _finish(_check_file(path, build_args=dict(build_args)))


def check_text(
    text: str, source: str, build_args: Mapping[str, str]
) -> tuple[ModelSpec, tuple[Diagnostic, ...]]:
    from mfc.modelfile import check_text as _check_text

    return _finish(_check_text(text, source, build_args=dict(build_args)))
