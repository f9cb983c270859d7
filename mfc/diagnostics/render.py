"""Diagnostics -> text for people (source line, caret, help) and JSON for tools."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from mfc.diagnostics.diagnostic import Diagnostic, Severity
from mfc.diagnostics.source import SourceFile

Sources = Mapping[str, SourceFile | str]


def _width(ch: str) -> int:
    if ch == "\t":
        return 4
    if unicodedata.combining(ch) or ch in "\u200b\u200c\u200d\ufeff":
        return 0
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1


def _visible(ch: str) -> str:
    """Control characters from untrusted Modelfiles never reach the terminal raw."""
    code = ord(ch)
    if code < 0x20:
        return chr(0x2400 + code)  # control pictures: ␀ ␛ …
    if code == 0x7F or 0x80 <= code < 0xA0:
        return "\ufffd"
    return ch


def _display(text: str) -> str:
    return "".join("    " if ch == "\t" else _visible(ch) for ch in text)


def _clean(text: str) -> str:
    return "".join(_visible(ch) if ch != "\t" else " " for ch in text)


def render_one(diag: Diagnostic, source: SourceFile | None) -> str:
    span = diag.span
    where = f"{span.file}:{span.line}:{span.column}: " if span else ""
    lines = [f"{where}{diag.severity.value}[{diag.code}]: {_clean(diag.message)}"]
    if span is not None and source is not None and 1 <= span.line <= source.line_count:
        text = source.line_text(span.line)
        gutter = str(span.line)
        pad = " " * len(gutter)
        start_col = span.column - 1
        end_col = span.end_column - 1 if span.end_line == span.line else len(text)
        end_col = max(end_col, start_col + 1)
        lead = sum(_width(c) for c in text[:start_col])
        marks = max(1, sum(_width(c) for c in text[start_col:end_col]))
        caret = " " * lead + "^" * marks
        if diag.label:
            caret += " " + diag.label
        lines.append(f"{gutter} | {_display(text)}".rstrip())
        lines.append(f"{pad} | {caret}")
    if diag.hint:
        lines.append(f"help: {_clean(diag.hint)}")
    return "\n".join(lines)


def render_human(diagnostics: Iterable[Diagnostic], sources: Sources | None = None) -> str:
    """All diagnostics, each with its source line and caret, separated by blank lines."""
    table: dict[str, SourceFile] = {}
    for name, src in (sources or {}).items():
        table[name] = src if isinstance(src, SourceFile) else SourceFile(name, src)
    blocks = [render_one(d, table.get(d.span.file) if d.span else None) for d in diagnostics]
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def summary(diagnostics: Iterable[Diagnostic]) -> str:
    diags = list(diagnostics)
    errors = sum(d.severity is Severity.ERROR for d in diags)
    warnings = len(diags) - errors
    parts = []
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return ", ".join(parts) or "no problems"


def diagnostic_to_json(diag: Diagnostic) -> dict[str, Any]:
    return {
        "severity": diag.severity.value,
        "code": diag.code,
        "message": diag.message,
        "line": diag.span.line if diag.span else None,
        "column": diag.span.column if diag.span else None,
        "hint": diag.hint,
    }


def diagnostics_to_json(diagnostics: Iterable[Diagnostic]) -> list[dict[str, Any]]:
    return [diagnostic_to_json(d) for d in diagnostics]
