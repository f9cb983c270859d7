"""Diagnostics as data, shared by every phase: spans, the code registry, renderers.

The ground floor of the layer contract: it imports nothing else from mfc, so the
front-end, builder, store, runtime, CLI and server all report problems the same
way — a ``Diagnostic`` with a registered code — and render them as text for
people or JSON for tools.
"""

from mfc.diagnostics.codes import REGISTRY, Code
from mfc.diagnostics.diagnostic import Diagnostic, DiagnosticError, Severity, has_errors
from mfc.diagnostics.render import diagnostic_to_json, diagnostics_to_json, render_human, summary
from mfc.diagnostics.source import SourceFile
from mfc.diagnostics.span import Span

__all__ = [
    "REGISTRY",
    "Code",
    "Diagnostic",
    "DiagnosticError",
    "Severity",
    "SourceFile",
    "Span",
    "diagnostic_to_json",
    "diagnostics_to_json",
    "has_errors",
    "render_human",
    "summary",
]
