"""Template errors, as data the front-end and the runtime can locate.

Exception tree::

    TemplateError
    ├── TemplateSyntaxError   bad Go template (from ``translate_go``); has line/column
    └── TemplateRenderError   any failure while rendering; names the template's origin
        └── TemplateBudgetError   rendering ran out of time or output (a hostile template)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Syntax = Literal["go", "jinja"]
ProblemSeverity = Literal["error", "warning"]
# What made rendering fail: the sandbox refused ("security"), Go execution failed
# ("go": unknown field, bad types), the template called raise_exception ("raise"), it ran out of
# its time or output budget ("budget"), else "other".
RenderCause = Literal["security", "go", "raise", "budget", "other"]


@dataclass(frozen=True, slots=True)
class TemplateProblem:
    """The first problem found in a template; line/column are 1-based, relative to the text.

    ``severity`` is "warning" for a template that renders some conversations but
    fails on others (e.g. a Jinja template that refuses a system message with
    ``raise_exception``): legitimate, but worth showing.
    """

    message: str
    line: int
    column: int
    syntax: Syntax
    severity: ProblemSeverity = "error"


class TemplateError(Exception):
    """Base class of every error raised by ``mfc.template``."""


class TemplateSyntaxError(TemplateError):
    def __init__(self, message: str, line: int, column: int):
        self.message = message
        self.line = line
        self.column = column
        super().__init__(f"{line}:{column}: {message}")


class TemplateRenderError(TemplateError):
    """Rendering failed; ``str(err)`` reads ``<origin>[ line N]: <what went wrong>``."""

    def __init__(
        self, origin: str, message: str, line: int | None = None, cause: RenderCause = "other"
    ):
        self.origin = origin
        self.message = message
        self.line = line
        self.cause = cause
        where = origin if line is None else f"{origin} (template line {line})"
        super().__init__(f"template error in {where}: {message}")


class TemplateBudgetError(TemplateRenderError):
    """Rendering exceeded the sandbox's time or output budget (``mfc.template.sandbox``)."""

    def __init__(self, origin: str, message: str, line: int | None = None):
        super().__init__(origin, message, line, "budget")
