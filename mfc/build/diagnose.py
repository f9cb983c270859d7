"""The builder's diagnostic codes (MF2xx) and a helper to raise them.

Every input problem the builder finds — an unresolvable FROM, a truncated
GGUF, an adapter for another architecture, lockfile drift — is a located
``Diagnostic`` on the Modelfile line that caused it, raised as
``DiagnosticError`` so the CLI renders it like a front-end error.
"""

from __future__ import annotations

from typing import NoReturn

from mfc.modelfile.diagnostics import Diagnostic, DiagnosticError, Severity
from mfc.modelfile.span import Span

# code -> (slug, one-line description); registered with the front-end's code table.
BUILD_CODES: dict[str, tuple[str, str]] = {
    "MF201": ("not-gguf", "an input file is not a readable GGUF (wrong format or truncated)"),
    "MF202": ("unresolved-from", "FROM matches no file, Modelfile, local model or cached image"),
    "MF203": ("digest-mismatch", "`FROM name@sha256:…` names a model whose digest differs"),
    "MF204": ("build-cycle", "Modelfiles that build FROM each other in a cycle"),
    "MF205": ("input-not-found", "an ADAPTER (or path-like FROM) file does not exist"),
    "MF206": ("ambiguous-directory", "a FROM/ADAPTER directory holds no GGUF or several"),
    "MF207": ("split-incomplete", "a shard of a split GGUF set is missing or inconsistent"),
    "MF208": ("from-adapter", "FROM names a LoRA adapter instead of a model"),
    "MF209": ("bad-adapter", "an ADAPTER does not fit the base model"),
    "MF210": ("lock-drift", "`--locked`: inputs resolve differently from Modelfile.lock"),
    "MF211": ("lock-missing", "`--locked` without a usable Modelfile.lock"),
    "MF212": ("bad-quantize", "`--quantize` with an unknown type or a base it cannot quantize"),
    "MF213": ("quantize-failed", "llama.cpp's quantizer failed"),
    "MF214": ("invalid-tag", "the name given with `-t`/`create` is not a valid model name"),
    "MF215": ("self-reference", "FROM names the model being built and no other source has it"),
    "MF216": ("bad-base", "the base model image is unusable (missing blobs, no model layer)"),
    "MF217": ("draft-ignored", "DRAFT is parsed but not built into the image yet"),
}


def error(
    code: str,
    message: str,
    span: Span | None,
    *,
    hint: str | None = None,
    label: str | None = None,
) -> Diagnostic:
    assert code in BUILD_CODES, code
    return Diagnostic(code, Severity.ERROR, message, span, hint=hint, label=label)


def warning(code: str, message: str, span: Span | None, *, hint: str | None = None) -> Diagnostic:
    assert code in BUILD_CODES, code
    return Diagnostic(code, Severity.WARNING, message, span, hint=hint)


def fail(
    code: str,
    message: str,
    span: Span | None,
    *,
    hint: str | None = None,
    label: str | None = None,
) -> NoReturn:
    raise DiagnosticError([error(code, message, span, hint=hint, label=label)])
