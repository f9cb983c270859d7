"""Check and render prompt templates of either syntax (Ollama's Go templates or Jinja2).

Go templates are parsed, given Ollama's execution semantics (``ollama``),
translated to Jinja2 (``go_translate``) and rendered in the sandbox; Jinja2
templates render in the sandbox with Hugging Face's conventions. Every failure
becomes ``TemplateRenderError`` naming where the template came from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import Template

from mfc.template import go_parse, go_values, ollama
from mfc.template.errors import (
    Syntax,
    TemplateProblem,
    TemplateRenderError,
    TemplateSyntaxError,
)
from mfc.template.go_translate import translate
from mfc.template.sandbox import compile_go, compile_hf

_GO_ACTION = re.compile(
    r"\{\{-?\s*(?:[.$(]|/\*|(?:if|else|end|range|with|define|template|block|break|continue"
    r"|and|or|not|eq|ne|lt|le|gt|ge|len|index|slice|json|print|printf|println)(?![\w(]))"
    r"|\{\{[^}]*?\s\.[A-Z]"  # ` .Field` inside an action: Go (Jinja would write `x.field`)
)


@lru_cache(maxsize=64)
def detect_syntax(text: str) -> Syntax:
    """Go or Jinja2? Jinja2 has ``{%``/``{#``; Go actions start with ``.``, ``$``, a keyword…"""
    if "{%" in text or "{#" in text:
        return "jinja"
    if "{{" not in text or _GO_ACTION.search(text):
        return "go"
    try:
        go_parse.parse(text)
    except TemplateSyntaxError as exc:
        go_error = exc
    else:
        return "go"
    try:
        compile_hf(text)
    except (jinja2.TemplateSyntaxError, RecursionError, SyntaxError):
        # broken either way: `{{ name … }}` reads as Jinja, anything else as Ollama's Go
        return "jinja" if go_error.message.startswith("function `") else "go"
    return "jinja"


def translate_go(text: str) -> str:
    """Go template → Jinja2 source (for the sandbox in ``mfc.template.sandbox``).

    A plain translation: Ollama's execution rules (``{{ .Response }}`` appended,
    rounds for legacy templates) are applied by ``render_prompt``, not here.
    Raises ``TemplateSyntaxError`` on bad input.
    """
    return translate(go_parse.parse(text), text)


_JINJA_TAG = re.compile(r"\{%[-+]?\s*(\w+)")
_JINJA_BLOCKS = frozenset(
    ["for", "if", "macro", "call", "filter", "block", "with", "autoescape", "generation"]
)


def _jinja_column(text: str, line: int, tag: str | None = None) -> int:
    """Column of ``{% tag`` (or of the first tag) on ``line``; Jinja reports lines only."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return 1
    src = lines[line - 1]
    if tag is not None:
        for m in _JINJA_TAG.finditer(src):
            if m.group(1) == tag:
                return m.start() + 1
    found = [i for i in (src.find("{%"), src.find("{{"), src.find("{#")) if i >= 0]
    return min(found) + 1 if found else 1


def _unclosed_block(text: str, name: str) -> int | None:
    """Offset of the innermost ``{% name %}`` that no ``{% endname %}`` closes."""
    stack: list[tuple[str, int]] = []
    for m in _JINJA_TAG.finditer(text):
        word = m.group(1)
        if word in _JINJA_BLOCKS:
            stack.append((word, m.start()))
        elif word.startswith("end") and word[3:] in _JINJA_BLOCKS:
            for i in range(len(stack) - 1, -1, -1):
                if stack[i][0] == word[3:]:
                    del stack[i:]
                    break
    for word, offset in reversed(stack):
        if word == name:
            return offset
    return None


def _jinja_problem(text: str, exc: jinja2.TemplateSyntaxError) -> TemplateProblem:
    message = exc.message or "invalid Jinja2 template"
    line = exc.lineno or 1
    unclosed = re.search(r"innermost block that needs to be closed is '(\w+)'", message)
    if message.startswith("Unexpected end of template") and unclosed:
        name = unclosed.group(1)
        offset = _unclosed_block(text, name)
        if offset is not None:
            line, column = go_parse.line_col(text, offset)
            msg = f"`{{% {name} %}}` is never closed: add `{{% end{name} %}}`"
            return TemplateProblem(msg, line, column, "jinja")
    unknown = re.match(r"Encountered unknown tag '(\w+)'", message)
    column = _jinja_column(text, line, unknown.group(1) if unknown else None)
    return TemplateProblem(message[:1].lower() + message[1:], line, column, "jinja")


def check_template(text: str) -> TemplateProblem | None:
    """The first syntax problem in ``text`` (either syntax), or None."""
    syntax = detect_syntax(text)
    if syntax == "go":
        try:
            _go_program(text)
        except TemplateSyntaxError as exc:
            return TemplateProblem(exc.message, exc.line, exc.column, "go")
        return None
    try:
        compile_hf(text)
    except jinja2.TemplateSyntaxError as exc:
        return _jinja_problem(text, exc)
    except (RecursionError, SyntaxError):  # Python's own nesting limits
        return TemplateProblem("template nests too deeply", 1, 1, "jinja")
    return None


@dataclass(frozen=True, slots=True)
class _GoProgram:
    uses_messages: bool
    full: Template
    cut: Template  # legacy templates: up to the first `.Response`


@lru_cache(maxsize=64)
def _go_program(text: str) -> _GoProgram:
    nodes = ollama.with_response(go_parse.parse(text), len(text))
    names = ollama.identifiers(nodes)
    try:
        full = compile_go(translate(nodes, text))
        if "messages" in names or "document" in names:
            return _GoProgram(True, full, full)
        cut = compile_go(translate(ollama.cut_at_response(nodes), text))
    except (RecursionError, SyntaxError):  # Python's own nesting limits
        raise TemplateSyntaxError("template nests too deeply", 1, 1) from None
    return _GoProgram(False, full, cut)


def _template_line(exc: BaseException) -> int | None:
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _run(template: Template, context: dict[str, Any], origin: str) -> str:
    try:
        return template.render(context)
    except TemplateRenderError:
        raise
    except jinja2.UndefinedError as exc:
        raise TemplateRenderError(origin, f"undefined value: {exc}", _template_line(exc)) from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateRenderError(origin, f"unsafe template: {exc}", _template_line(exc)) from None
    except go_values.GoExecError as exc:
        raise TemplateRenderError(origin, str(exc), _template_line(exc)) from None
    except jinja2.TemplateError as exc:
        raise TemplateRenderError(origin, str(exc), _template_line(exc)) from None
    except (
        TypeError,
        ValueError,
        KeyError,
        IndexError,
        AttributeError,
        OverflowError,
        ZeroDivisionError,
        RecursionError,
    ) as exc:
        raise TemplateRenderError(
            origin, f"{type(exc).__name__}: {exc}", _template_line(exc)
        ) from None


def _with_system(messages: Sequence[Mapping[str, Any]], system: str | None) -> list[dict[str, Any]]:
    out = [dict(m) for m in messages]
    if system and (not out or out[0].get("role") != "system"):
        out.insert(0, {"role": "system", "content": system})
    return out


def render_prompt(
    template: str,
    *,
    messages: Sequence[Mapping[str, Any]],
    system: str | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    think: bool | str | None = None,
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
    origin: str,
) -> str:
    """The prompt text the model sees for ``messages`` under ``template``.

    ``system`` (the SYSTEM layer) is put first unless the conversation already
    starts with a system message, as Ollama does. Go templates follow Ollama
    (``add_generation_prompt``, ``bos_token`` and ``eos_token`` do not apply to
    them); Jinja2 templates get Hugging Face's variables.
    """
    msgs = _with_system(messages, system)
    syntax = detect_syntax(template)
    if syntax == "go":
        try:
            program = _go_program(template)
        except TemplateSyntaxError as exc:
            raise TemplateRenderError(origin, exc.message, exc.line) from None
        conv = ollama.Conversation(tuple(msgs), tuple(tools) if tools else None, think)
        try:
            if program.uses_messages:
                return _run(program.full, {"root": ollama.messages_root(conv)}, origin)
            rounds = ollama.legacy_rounds(conv)
        except (TypeError, ValueError) as exc:
            raise TemplateRenderError(origin, f"bad conversation: {exc}") from None
        parts = [_run(program.full, {"root": r}, origin) for r in rounds[:-1]]
        parts.append(_run(program.cut, {"root": rounds[-1]}, origin))
        return "".join(parts)
    try:
        compiled = compile_hf(template)
    except (RecursionError, SyntaxError):  # Python's own nesting limits
        raise TemplateRenderError(origin, "template nests too deeply") from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateRenderError(
            origin, exc.message or "invalid Jinja2 template", exc.lineno
        ) from None
    context: dict[str, Any] = {
        "messages": go_values.plain(msgs),
        "add_generation_prompt": add_generation_prompt,
        "bos_token": bos_token,
        "eos_token": eos_token,
        "tools": go_values.plain(list(tools)) if tools else None,
    }
    if think is not None:
        context["enable_thinking"] = bool(think)
    return _run(compiled, context, origin)
