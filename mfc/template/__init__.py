"""Prompt templates: Ollama's Go templates and Jinja2, checked and rendered in a sandbox.

One module understands Go-template syntax; the front-end (TEMPLATE checks) and
the runtime (prompt building, ``mfc template render``) both use it.
"""

from __future__ import annotations

from mfc.template.builtin import builtin_markers, builtin_names, builtin_template
from mfc.template.errors import (
    TemplateBudgetError,
    TemplateError,
    TemplateProblem,
    TemplateRenderError,
    TemplateSyntaxError,
)
from mfc.template.render import (
    check_template,
    detect_syntax,
    render_insert,
    render_prompt,
    translate_go,
)

__all__ = [
    "TemplateBudgetError",
    "TemplateError",
    "TemplateProblem",
    "TemplateRenderError",
    "TemplateSyntaxError",
    "builtin_markers",
    "builtin_names",
    "builtin_template",
    "check_template",
    "detect_syntax",
    "render_insert",
    "render_prompt",
    "translate_go",
]
