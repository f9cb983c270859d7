"""Check and render prompt templates of either syntax (Ollama's Go templates or Jinja2).

Go templates are parsed, given Ollama's execution semantics (``ollama``),
translated to Jinja2 (``go_translate``) and rendered in the sandbox; Jinja2
templates render in the sandbox with Hugging Face's conventions. Every failure
becomes ``TemplateRenderError`` naming where the template came from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import Template

from mfc.template import go_parse, go_values, ollama
from mfc.template.errors import (
    ProblemSeverity,
    RenderCause,
    Syntax,
    TemplateBudgetError,
    TemplateProblem,
    TemplateRenderError,
    TemplateSyntaxError,
)
from mfc.template.go_translate import translate
from mfc.template.sandbox import BudgetExceeded, budget, compile_go, compile_hf, hf_environment

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
    message = message[:1].lower() + message[1:]
    if re.match(r"unexpected (?:end of template|'end of template')", message):  # at the end
        line, column = go_parse.line_col(text, len(text))
        return TemplateProblem(message, line, column, "jinja")
    unknown = re.match(r"encountered unknown tag '(\w+)'", message)
    named = re.match(r"no (?:filter|test) named '(\w+)'", message)
    if unknown:
        column = _jinja_column(text, line, unknown.group(1))
    elif named and (m := re.search(rf"\b{named.group(1)}\b", _line_text(text, line))):
        column = m.start() + 1
    else:
        column = _failing_token_column(text, line) or _jinja_column(text, line)
    return TemplateProblem(message, line, column, "jinja")


def _line_text(text: str, line: int) -> str:
    lines = text.split("\n")
    return lines[line - 1] if 1 <= line <= len(lines) else ""


def _failing_token_column(text: str, line: int) -> int | None:
    """Column of the token Jinja's parser stood on when it failed (Jinja reports lines only).

    The parser is run again over a recorded token stream; the failing token is
    then found in the line's text by walking that line's tokens in order.
    """
    from jinja2.lexer import TOKEN_DATA, TOKEN_EOF, TOKEN_STRING
    from jinja2.parser import Parser

    seen: list[Any] = []

    def record(tokens: Any) -> Any:
        for tok in tokens:
            seen.append(tok)
            yield tok

    try:
        parser = Parser(hf_environment(), text)
        seen.append(parser.stream.current)
        parser.stream._iter = record(parser.stream._iter)
        parser.parse()
    except jinja2.TemplateSyntaxError:
        pass
    else:
        return None
    current = parser.stream.current
    if current.type == TOKEN_EOF or current.lineno != line:
        return None
    src = _line_text(text, line)
    cursor = 0
    for tok in seen:
        if tok.lineno < line and tok.type == TOKEN_DATA and "\n" in tok.value:
            if tok.lineno + tok.value.count("\n") >= line:
                cursor = len(tok.value.rsplit("\n", 1)[1])
            continue
        if tok.lineno != line:
            continue
        value = str(tok.value).split("\n", 1)[0]
        if tok.type == TOKEN_STRING:  # unescaped contents: find the opening quote instead
            quotes = [i for i in (src.find("'", cursor), src.find('"', cursor)) if i >= 0]
            found = min(quotes, default=-1)
        else:
            found = src.find(value, cursor) if value else -1
        if found < 0:
            return None
        if tok is current:
            return found + 1
        cursor = found + max(len(value), 1)
    return None


def check_template(text: str, *, warnings: bool = False) -> TemplateProblem | None:
    """The first problem in ``text`` (either syntax), or None.

    Syntax first; then a sandboxed trial render on two sample conversations
    (system + user + assistant + user, and user only), so a template that
    reaches for Python internals or names a field Go's data does not have is
    found when the Modelfile is checked, not on the first prompt. A template
    that renders one sample but not the other is a problem of severity
    "warning", returned only with ``warnings=True`` (callers that treat every
    problem as an error keep accepting such templates).
    """
    syntax = detect_syntax(text)
    if syntax == "go":
        try:
            _go_program(text)
        except TemplateSyntaxError as exc:
            return TemplateProblem(exc.message, exc.line, exc.column, "go")
        return _trial_problem(text, "go", warnings)
    try:
        compile_hf(text)
    except jinja2.TemplateSyntaxError as exc:
        return _jinja_problem(text, exc)
    except (RecursionError, SyntaxError):  # Python's own nesting limits
        return TemplateProblem("template nests too deeply", 1, 1, "jinja")
    return _trial_problem(text, "jinja", warnings)


_SAMPLES: tuple[tuple[str, str | None, tuple[dict[str, str], ...]], ...] = (
    (
        "system + user + assistant + user",
        "You are a helpful assistant.",
        (
            {"role": "user", "content": "Hello!"},
            {"role": "assistant", "content": "Hi. How can I help?"},
            {"role": "user", "content": "Tell me a joke."},
        ),
    ),
    ("user-only", None, ({"role": "user", "content": "Hello!"},)),
)


def _trial_problem(text: str, syntax: Syntax, warnings: bool) -> TemplateProblem | None:
    """Render the sample conversations; a failure becomes a located problem.

    Sandbox refusals and Go execution errors (an unknown field …) are errors
    whatever the conversation. Other failures are errors only if no sample
    renders: a Jinja template may legitimately `raise_exception` on a role it
    does not support, which is a warning.
    """
    failures: list[tuple[str, TemplateRenderError]] = []
    for shape, system, messages in _SAMPLES:
        try:
            render_prompt(
                text,
                messages=messages,
                system=system,
                bos_token="<s>",
                eos_token="</s>",
                origin="template",
            )
        except TemplateRenderError as exc:
            if exc.cause in ("security", "go", "budget"):
                return _render_problem(text, syntax, exc, "error", "")
            failures.append((shape, exc))
    if not failures:
        return None
    shape, first = failures[0]
    if len(failures) == len(_SAMPLES):
        return _render_problem(text, syntax, first, "error", "")
    if not warnings:
        return None
    return _render_problem(text, syntax, first, "warning", f" on a {shape} conversation")


def _render_problem(
    text: str, syntax: Syntax, exc: TemplateRenderError, severity: ProblemSeverity, where: str
) -> TemplateProblem:
    message = f"rendering fails{where}: {exc.message}"
    offset = _render_error_offset(text, syntax, exc)
    if offset is not None:
        line, column = go_parse.line_col(text, offset)
    elif syntax == "jinja" and exc.line is not None:
        line, column = exc.line, _jinja_column(text, exc.line)
    else:
        line, column = 1, 1
    return TemplateProblem(message, line, column, syntax, severity)


def _render_error_offset(text: str, syntax: Syntax, exc: TemplateRenderError) -> int | None:
    """Where the failing name is in the source: the attribute the sandbox refused, the Go
    field that does not exist, or the `raise_exception` call. The search starts on the
    failing line (translation keeps a Go template's line numbers), else anywhere."""
    field = re.search(r"can't evaluate field (\w+)", exc.message)
    name = re.search(r"access to attribute `(\w+)`|unsafe template: .*?'(\w+)'", exc.message)
    if syntax == "go" and field:
        pattern = rf"\.{field.group(1)}\b"
    elif name is not None:
        pattern = rf"\b{re.escape(name.group(1) or name.group(2))}\b"
    elif exc.cause == "raise":
        pattern = r"\braise_exception\b"
    elif exc.cause == "budget":  # the loop (or call) that was running when time ran out
        pattern = r"\{%-?\s*for\b|\{\{-?\s*range\b" if exc.line else r"\{[{%]"
    else:
        return None
    starts = [0, *(m.end() for m in re.finditer("\n", text))]
    if exc.line and exc.line <= len(starts):
        m = re.search(pattern, text[starts[exc.line - 1] :])
        if m:
            return starts[exc.line - 1] + m.start()
    m = re.search(pattern, text)
    return m.start() if m else None


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
    except BudgetExceeded as exc:
        raise TemplateBudgetError(origin, str(exc), _template_line(exc)) from None
    except jinja2.UndefinedError as exc:
        raise TemplateRenderError(origin, f"undefined value: {exc}", _template_line(exc)) from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateRenderError(
            origin, f"unsafe template: {exc}", _template_line(exc), "security"
        ) from None
    except go_values.GoExecError as exc:
        raise TemplateRenderError(origin, str(exc), _template_line(exc), "go") from None
    except jinja2.TemplateError as exc:
        cause: RenderCause = "raise" if type(exc) is jinja2.TemplateError else "other"
        raise TemplateRenderError(origin, str(exc), _template_line(exc), cause) from None
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
    with budget(input_size=_input_size(msgs, tools)):
        return _render_prompt(
            template, msgs, tools, think, add_generation_prompt, bos_token, eos_token, origin
        )


def _input_size(messages: Sequence[Mapping[str, Any]], tools: Any) -> int:
    """Characters handed to the template: its output budget grows with them."""
    size = sum(len(str(v)) for m in messages for v in m.values())
    if tools:
        size += len(json.dumps(tools, default=str))
    return size


def _render_prompt(
    template: str,
    msgs: list[dict[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None,
    think: bool | str | None,
    add_generation_prompt: bool,
    bos_token: str,
    eos_token: str,
    origin: str,
) -> str:
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


def render_insert(
    template: str, *, prompt: str, suffix: str, think: bool | str | None = None, origin: str
) -> str:
    """The fill-in-the-middle prompt of /api/generate's ``suffix`` (Ollama's insert mode).

    Ollama executes the template with only ``.Prompt`` and ``.Suffix`` (no messages, no
    system); a model has the ``insert`` capability only when its Go template reads
    ``.Suffix``, so a Jinja2 template never gets here through the API.
    """
    if detect_syntax(template) != "go":
        raise TemplateRenderError(origin, "a suffix needs a Go template that uses .Suffix")
    try:
        program = _go_program(template)
    except TemplateSyntaxError as exc:
        raise TemplateRenderError(origin, exc.message, exc.line) from None
    root = {"Prompt": prompt, "Suffix": suffix, "Response": "", **ollama._think_values(think)}
    with budget(input_size=len(prompt) + len(suffix)):
        return _run(program.full, {"root": root}, origin)
