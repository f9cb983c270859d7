"""Diagnostics as data: a stable code, a severity, a located message and a fix.

Every problem caused by user input (Modelfile text, a missing file, a bad
adapter) is a Diagnostic, never a bare exception; rendering is separate (see
``render``). Codes are ``MF`` + 3 digits: 0xx syntax, 1xx semantics,
2xx resolve/build, 3xx runtime; the registry of codes lives in ``codes``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mfc.diagnostics.span import Span


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
    """Raised by later phases (build, run, serve) to stop with located diagnostics.

    ``sources`` maps a span's file name to its text when that text exists only
    in memory (a template typed at the REPL), so a renderer can still show the
    line and caret; files on disk are read by the renderer's caller.
    """

    def __init__(
        self,
        diagnostics: Iterable[Diagnostic],
        sources: Mapping[str, str] | None = None,
    ):
        self.diagnostics = tuple(diagnostics)
        self.sources: Mapping[str, str] = dict(sources or {})
        super().__init__("; ".join(d.message for d in self.diagnostics))
