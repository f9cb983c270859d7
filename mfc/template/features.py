"""What a template says about a model's output: its thinking tags and its tool-call markup.

Three questions, answered from the template text alone and cached per text:

- `thinking_tags`: the tags around reasoning, e.g. ``("<think>", "</think>")``.
  Go templates: Ollama's ``thinking.InferTags`` on the parse tree — find
  ``.Thinking`` inside a ``range`` over ``.Messages`` and take the first and last
  text nodes of the nearest enclosing list (the last such list wins, as in
  Ollama). Jinja templates: Ollama's ``chatTemplateHasThinkingSupport`` —
  literal ``<think>`` and ``</think>`` (or the Qwen/DeepSeek habit of splitting
  earlier answers at ``</think>``) mean those tags.
- `template_supports_tools`: Go templates that use ``.Tools`` (Ollama's
  ``Vars``); Jinja templates that mention ``tools`` or ``tool_call``.
- `tool_call_format`: the markup a model writes around a tool call.

`tool_call_format` renders instead of walking a parse tree (Ollama's
``tools/template.go`` walks the Go tree for the first text after
``.ToolCalls``). Rendering works the same for both template syntaxes, sees
through helper variables, ``else`` chains and Jinja macros, and finds the
closing markup too: the template renders a conversation whose last assistant
turn calls a sentinel tool, and again with sentinel content instead of the
call; the text where the two renders differ, around the JSON that holds the
sentinel name, is the call's markup (``<tool_call>`` … ``</tool_call>``,
``[TOOL_CALLS]`` before a JSON array, or nothing at all, llama 3.1's bare JSON).
A template that shows no call (or fails on the synthetic conversation) has no
format; callers fall back to a per-family one or to Ollama's bare ``{``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from mfc.template import go_ast as ast
from mfc.template.errors import TemplateError

__all__ = [
    "ToolCallFormat",
    "template_supports_thinking",
    "template_supports_tools",
    "thinking_tags",
    "tool_call_format",
]

_SENTINEL_TOOL = "mfc_sentinel_tool_5b1e"
_SENTINEL_CALL = "mfc_sentinel_call_9c4d"
_SENTINEL_KEY = "mfc_sentinel_key_2f7a"
_SENTINEL_VALUE = "mfc_sentinel_value_8e3b"
_SENTINEL_CONTENT = "mfc_sentinel_content_6a0c"


@dataclass(frozen=True)
class ToolCallFormat:
    """How a model writes tool calls: ``prefix`` JSON… ``suffix``.

    ``prefix`` is empty for models that answer a bare JSON object (the call is
    then recognised only when the answer starts with ``{`` or ``[``, as Ollama
    does); ``suffix`` may be empty (``[TOOL_CALLS] [...]`` ends with EOS).
    ``array`` says the template writes the calls as one JSON array.
    """

    prefix: str
    suffix: str = ""
    array: bool = False


# -- tools -------------------------------------------------------------------------------------


def _syntax(template: str) -> str:
    from mfc.template.render import detect_syntax

    return detect_syntax(template)


@lru_cache(maxsize=64)
def _go_nodes(template: str) -> tuple[ast.Node, ...] | None:
    from mfc.template import go_parse
    from mfc.template.errors import TemplateSyntaxError

    try:
        return go_parse.parse(template)
    except (TemplateSyntaxError, RecursionError):
        return None


def template_supports_tools(template: str | None) -> bool:
    """Ollama's `tools` capability: the template can show the model its tools."""
    if not template:
        return False
    if _syntax(template) == "go":
        from mfc.template.ollama import identifiers

        nodes = _go_nodes(template)
        return nodes is not None and "tools" in identifiers(nodes)
    return "tools" in template or "tool_call" in template


def template_supports_thinking(template: str | None) -> bool:
    """Ollama's `thinking` capability: thinking tags can be inferred from the template."""
    return thinking_tags(template) is not None


# -- thinking ----------------------------------------------------------------------------------


def thinking_tags(template: str | None) -> tuple[str, str] | None:
    """The (opening, closing) thinking tags the template shows, or None."""
    if not template:
        return None
    return _thinking_tags(template)


@lru_cache(maxsize=64)
def _thinking_tags(template: str) -> tuple[str, str] | None:
    if _syntax(template) != "go":
        if "<think>" in template and "</think>" in template:
            return ("<think>", "</think>")
        splits = "content.split('</think>')" in template or 'content.split("</think>")' in template
        if splits and "reasoning_content" not in template and "<SPECIAL_12>" not in template:
            return ("<think>", "</think>")
        return None
    nodes = _go_nodes(template)
    if nodes is None:
        return None
    found = _InferTags()
    found.visit_list(nodes, in_messages_range=False)
    return (found.opening, found.closing) if found.opening and found.closing else None


class _InferTags:
    """Ollama's ``thinking.InferTags`` over mfc's Go parse tree.

    Every list (a branch body, an ``else`` list, the root) is a Go ``ListNode``:
    when a ``.Thinking`` field sits (at any depth, pipelines included) under a
    ``range`` over ``.Messages``, the nearest list around it gives its first
    and last text nodes, trimmed, as the tags. A later find overwrites an
    earlier one, but only with text nodes (as in Ollama).
    """

    def __init__(self) -> None:
        self.opening = ""
        self.closing = ""

    def visit_list(self, nodes: Sequence[ast.Node], *, in_messages_range: bool) -> None:
        for node in nodes:
            self._visit(node, nodes, in_messages_range)

    def _visit(self, node: ast.Node, siblings: Sequence[ast.Node], in_range: bool) -> None:
        if isinstance(node, ast.Action):
            if in_range and _mentions(node.pipe, "Thinking"):
                self._take(siblings)
        elif isinstance(node, ast.Branch):
            if in_range and _mentions(node.pipe, "Thinking"):
                self._take(siblings)
            inner = _mentions(node.pipe, "Messages") if node.kind == "range" else in_range
            self.visit_list(node.body, in_messages_range=inner)
            if node.orelse is not None:
                self.visit_list(node.orelse, in_messages_range=inner)

    def _take(self, siblings: Sequence[ast.Node]) -> None:
        first, last = siblings[0], siblings[-1]
        if isinstance(first, ast.Text):
            self.opening = first.text.strip()
        if isinstance(last, ast.Text):
            self.closing = last.text.strip()


def _mentions(node: ast.Pipe | ast.Command | ast.Arg, name: str) -> bool:
    if isinstance(node, ast.Pipe):
        return any(_mentions(c, name) for c in node.cmds)
    if isinstance(node, ast.Command):
        return any(_mentions(a, name) for a in node.args)
    if isinstance(node, (ast.Field, ast.Variable)):
        return name in node.idents
    if isinstance(node, ast.Chain):
        return name in node.idents or _mentions(node.node, name)
    return False


# -- tool-call markup ----------------------------------------------------------------------------


def tool_call_format(template: str | None) -> ToolCallFormat | None:
    """The tool-call markup ``template`` shows, or None when it shows no call."""
    if not template:
        return None
    return _tool_call_format(template)


def _render(template: str, assistant: dict[str, Any]) -> str:
    from mfc.template.render import render_prompt

    tool = {
        "type": "function",
        "function": {
            "name": _SENTINEL_TOOL,
            "description": "",
            "parameters": {"type": "object", "properties": {}},
        },
    }
    return render_prompt(
        template,
        messages=[{"role": "user", "content": "q"}, {"role": "assistant", **assistant}],
        tools=[tool],
        add_generation_prompt=False,
        origin="tool-call format probe",
    )


@lru_cache(maxsize=64)
def _tool_call_format(template: str) -> ToolCallFormat | None:
    call = {
        "type": "function",
        "function": {"name": _SENTINEL_CALL, "arguments": {_SENTINEL_KEY: _SENTINEL_VALUE}},
    }
    try:
        with_call = _render(template, {"content": "", "tool_calls": [call]})
        with_text = _render(template, {"content": _SENTINEL_CONTENT})
    except (TemplateError, RecursionError):
        return None
    at = with_call.find(_SENTINEL_CALL)
    if at < 0:
        return None
    start = _common_prefix(with_call, with_text)
    if start > at:
        return None
    span = _json_around(with_call, start, at)
    if span is None:
        return None
    begin, end, array = span
    tail_text = with_text[with_text.find(_SENTINEL_CONTENT) + len(_SENTINEL_CONTENT) :]
    common_tail = _common_suffix(with_call[end:], tail_text)
    suffix = with_call[end : len(with_call) - common_tail]
    return ToolCallFormat(with_call[start:begin].strip(), suffix.strip(), array)


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _common_suffix(a: str, b: str) -> int:
    return _common_prefix(a[::-1], b[::-1])


def _json_around(text: str, start: int, at: int) -> tuple[int, int, bool] | None:
    """The outermost JSON value starting at or after ``start`` that spans ``at``."""
    decoder = json.JSONDecoder()
    for i in range(start, at):
        if text[i] not in "{[":
            continue
        try:
            value, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            continue
        if end > at:
            return i, end, isinstance(value, list)
    return None
