"""The builder's diagnostic codes (MF2xx) and a helper to raise them.

Every input problem the builder finds — an unresolvable FROM, a truncated
GGUF, an adapter for another architecture, lockfile drift — is a located
``Diagnostic`` on the Modelfile line that caused it, raised as
``DiagnosticError`` so the CLI renders it like a front-end error.
"""

from __future__ import annotations

from typing import NoReturn

from mfc.modelfile.codes import REGISTRY
from mfc.modelfile.diagnostics import Diagnostic, DiagnosticError, Severity
from mfc.modelfile.span import Span


def error(
    code: str,
    message: str,
    span: Span | None,
    *,
    hint: str | None = None,
    label: str | None = None,
) -> Diagnostic:
    entry = REGISTRY[code]
    assert entry.severity is Severity.ERROR, code
    return entry(span, message, hint=hint, label=label)


def warning(code: str, message: str, span: Span | None, *, hint: str | None = None) -> Diagnostic:
    entry = REGISTRY[code]
    assert entry.severity is Severity.WARNING, code
    return entry(span, message, hint=hint)


def fail(
    code: str,
    message: str,
    span: Span | None,
    *,
    hint: str | None = None,
    label: str | None = None,
) -> NoReturn:
    raise DiagnosticError([error(code, message, span, hint=hint, label=label)])
