"""Diagnostics as data: a stable code, a severity, a located message and a fix.

Every problem caused by user input (Modelfile text, a missing file, a bad
adapter) is a Diagnostic, never a bare exception; rendering is separate (see
``render``). Codes are ``MF`` + 3 digits: 0xx syntax, 1xx semantics,
2xx resolve/build, 3xx runtime; the registry of codes lives in ``codes``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from mfc.modelfile.span import Span


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str  # e.g. "MF102"
    severity: Severity
    message: str  # lower case, no trailing period, user tokens in backticks
    span: Span | None  # None only for problems with no location (e.g. unreadable file)
    hint: str | None = None  # the `help:` line: how to fix it
    label: str | None = None  # short text shown under the caret

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.is_error for d in diagnostics)


class DiagnosticError(Exception):
    """Raised by later phases (build, run) to stop with located diagnostics."""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics = tuple(diagnostics)
        super().__init__("; ".join(d.message for d in self.diagnostics))
