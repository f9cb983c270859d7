"""The Modelfile front-end: parse -> syntax IR -> check -> ModelSpec; diagnostics; format."""

from mfc.diagnostics.diagnostic import Diagnostic, DiagnosticError, Severity, has_errors
from mfc.diagnostics.render import diagnostics_to_json, render_human
from mfc.diagnostics.source import SourceFile
from mfc.diagnostics.span import Span
from mfc.modelfile.check import CheckResult, check_file, check_parsed, check_text
from mfc.modelfile.format import (
    format_instruction,
    format_modelfile,
    quote_value,
    render_instruction,
)
from mfc.modelfile.ir import Comment, Flag, Instruction, Modelfile
from mfc.modelfile.parser import ParseResult, parse_bytes, parse_text
from mfc.modelfile.spec import ModelSpec

__all__ = [
    "CheckResult",
    "Comment",
    "Diagnostic",
    "DiagnosticError",
    "Flag",
    "Instruction",
    "ModelSpec",
    "Modelfile",
    "ParseResult",
    "Severity",
    "SourceFile",
    "Span",
    "check_file",
    "check_parsed",
    "check_text",
    "diagnostics_to_json",
    "format_instruction",
    "format_modelfile",
    "has_errors",
    "parse_bytes",
    "parse_text",
    "quote_value",
    "render_human",
    "render_instruction",
]
