"""A model's streamed answer, split into thinking, content and tool calls (as Ollama does).

One `OutputParser` per generation: `feed` each piece of text as the engine
prints it, `finish` at the end. Each call returns what became certain — text
that might still be the start of a tag (``<th`` … ``<tool_ca``) is held back
until the next piece decides, and at `finish` whatever is held is released,
so no text is ever lost or duplicated.

Two stages, in Ollama's order (``server/routes.go`` ChatHandler):

1. Thinking (Ollama's ``thinking.Parser``): when the template shows thinking
   tags and the request did not say ``think: false`` (Ollama turns an unset
   ``think`` on for a thinking model), text from the opening tag to the closing
   tag is thinking. The opening tag counts only at the start of the answer
   (after whitespace), or is implied when the prompt itself ends with it.
   Whitespace right after either tag is dropped. With ``think: false`` nothing
   is split: whatever the model prints is content.
2. Tool calls, only when the request has tools: the markup the template shows
   (`mfc.template.features.tool_call_format`), else the family's published
   format, else Ollama's default — a bare JSON object or array at the start of
   the answer. Each call is emitted as soon as its JSON is complete. A call
   object has ``name`` and ``arguments`` (or ``parameters``), an object or a
   JSON-encoded string; an array, or several tagged blocks, give several calls
   numbered 0, 1, 2…. Content before a call is content.

Where mfc differs from Ollama: Ollama drops what follows a call tag when it is
not a call of a known tool; mfc releases it as content (a call naming a tool
the request does not have is not a tool call, in both).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mfc.template.builtin import FAMILIES
from mfc.template.features import (
    ToolCallFormat,
    template_supports_thinking,
    template_supports_tools,
    thinking_tags,
    tool_call_format,
)

__all__ = [
    "FAMILY_TOOL_FORMATS",
    "OutputParser",
    "Parsed",
    "ToolCall",
    "ToolCallFormat",
    "output_parser",
    "template_supports_thinking",
    "template_supports_tools",
    "think_enabled",
    "thinking_tags",
]


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: Mapping[str, Any]  # always a JSON object (dict)
    index: int  # 0-based position among this answer's calls


@dataclass(frozen=True)
class Parsed:
    """What a piece of output turned out to be; ``+`` joins consecutive results."""

    content: str = ""
    thinking: str = ""
    tool_calls: tuple[ToolCall, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.content or self.thinking or self.tool_calls)

    def __add__(self, other: Parsed) -> Parsed:
        return Parsed(
            self.content + other.content,
            self.thinking + other.thinking,
            self.tool_calls + other.tool_calls,
        )


FAMILY_TOOL_FORMATS: dict[str, ToolCallFormat] = {
    "llama3": ToolCallFormat(""),  # llama 3.1: {"name": …, "parameters": {…}}
    "chatml": ToolCallFormat("<tool_call>", "</tool_call>"),  # qwen2.5, hermes
    "mistral": ToolCallFormat("[TOOL_CALLS]", "", array=True),
}
"""The published call format of each built-in template's family (keys: builtin file stems)."""


def think_enabled(think: bool | str | None) -> bool:
    """Ollama's ``ThinkValue.Bool``: true, or a level (low/medium/high/max)."""
    if isinstance(think, str):
        return think in ("low", "medium", "high", "max")
    return bool(think)


def output_parser(
    template: str | None,
    *,
    prompt: str = "",
    tools: Sequence[Mapping[str, Any]] | None = None,
    think: bool | str | None = None,
    family: str | None = None,
) -> OutputParser:
    """The parser for one generation with ``template`` (None: a raw prompt).

    ``think`` None means "not set": split thinking whenever the template shows
    tags (Ollama enables thinking by default for a model that can think).
    ``family`` picks a published tool-call format when the template shows none.
    """
    splitter: _ThinkingSplitter | None = None
    tags = thinking_tags(template)
    if tags is not None and (think is None or think_enabled(think)):
        opening, closing = tags
        splitter = _ThinkingSplitter(opening, closing)
        if prompt.strip().endswith(opening):
            splitter.add(opening)
    scanner: _ToolScanner | None = None
    names = _tool_names(tools)
    if names:
        fmt = tool_call_format(template)
        if fmt is None and family:
            stem = FAMILIES.get(family.strip().lower())
            fmt = FAMILY_TOOL_FORMATS.get(stem) if stem else None
        scanner = _ToolScanner(fmt or ToolCallFormat(""), names)
    return OutputParser(splitter, scanner)


def _tool_names(tools: Sequence[Mapping[str, Any]] | None) -> frozenset[str]:
    names = set()
    for tool in tools or ():
        function = tool.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if isinstance(name, str) and name:
            names.add(name)
    return frozenset(names)


class OutputParser:
    """Splits one generation's text; one instance per generation, not thread-safe."""

    def __init__(self, splitter: _ThinkingSplitter | None, scanner: _ToolScanner | None):
        self._splitter = splitter
        self._scanner = scanner
        self._finished = False

    @property
    def splits_thinking(self) -> bool:
        """Whether this generation's text is split into thinking and content."""
        return self._splitter is not None

    def feed(self, text: str) -> Parsed:
        """What became certain with this piece (possibly nothing)."""
        thinking, content = self._splitter.add(text) if self._splitter else ("", text)
        if self._scanner is None:
            return Parsed(content, thinking)
        content, calls = self._scanner.add(content)
        return Parsed(content, thinking, calls)

    def finish(self) -> Parsed:
        """The end of the generation: release everything still held back."""
        if self._finished:
            return Parsed()
        self._finished = True
        thinking, content = self._splitter.flush() if self._splitter else ("", "")
        if self._scanner is None:
            return Parsed(content, thinking)
        content, calls = self._scanner.add(content)
        rest, more = self._scanner.flush()
        return Parsed(content + rest, thinking, calls + more)


def _overlap(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for n in range(min(len(text), len(tag) - 1), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class _ThinkingSplitter:
    """Ollama's ``thinking.Parser`` state machine (same states, same whitespace rules)."""

    _LOOKING, _STARTED, _THINKING, _DONE_EATING, _DONE = range(5)

    def __init__(self, opening: str, closing: str):
        self.opening = opening
        self.closing = closing
        self.state = self._LOOKING
        self.acc = ""

    def add(self, text: str) -> tuple[str, str]:
        self.acc += text
        thinking: list[str] = []
        content: list[str] = []
        more = True
        while more:
            t, c, more = self._eat()
            thinking.append(t)
            content.append(c)
        return "".join(thinking), "".join(content)

    def _eat(self) -> tuple[str, str, bool]:
        acc = self.acc
        if self.state == self._LOOKING:
            trimmed = acc.lstrip()
            if trimmed.startswith(self.opening):
                after = trimmed[len(self.opening) :].lstrip()
                self.acc = after
                self.state = self._THINKING if after else self._STARTED
                return "", "", True
            if self.opening.startswith(trimmed):  # a partial tag, or whitespace only
                return "", "", False
            self.state = self._DONE  # no thinking: the text, untrimmed, is content
            self.acc = ""
            return "", acc, False
        if self.state == self._STARTED:
            trimmed = acc.lstrip()
            self.acc = trimmed
            if not trimmed:
                return "", "", False
            self.state = self._THINKING
            return "", "", True
        if self.state == self._THINKING:
            at = acc.find(self.closing)
            if at >= 0:
                remaining = acc[at + len(self.closing) :].lstrip()
                self.acc = ""
                self.state = self._DONE if remaining else self._DONE_EATING
                return acc[:at], remaining, False
            held = _overlap(acc, self.closing)
            self.acc = acc[len(acc) - held :]
            return acc[: len(acc) - held], "", False
        if self.state == self._DONE_EATING:
            trimmed = acc.lstrip()
            self.acc = ""
            if trimmed:
                self.state = self._DONE
            return "", trimmed, False
        self.acc = ""
        return "", acc, False

    def flush(self) -> tuple[str, str]:
        """At the end: a held partial closing tag was thinking; anything else is content."""
        held, self.acc = self.acc, ""
        if self.state == self._THINKING:
            return held, ""
        if self.state in (self._STARTED, self._DONE_EATING):
            return "", ""
        return "", held


class _ToolScanner:
    """Finds tool calls in content, streaming; see the module docstring for the rules."""

    def __init__(self, fmt: ToolCallFormat, names: frozenset[str]):
        self.prefix = fmt.prefix
        self.suffix = fmt.suffix
        self.names = names
        self.state = "content" if self.prefix else "start"
        self.buf = ""
        self.raw = ""  # markup consumed since the last call (released if no call follows)
        self.after_call = False  # whitespace right after a call is dropped
        self.count = 0

    def add(self, text: str) -> tuple[str, tuple[ToolCall, ...]]:
        self.buf += text
        out: list[str] = []
        calls: list[ToolCall] = []
        while self._step(out, calls):
            pass
        return "".join(out), tuple(calls)

    def _step(self, out: list[str], calls: list[ToolCall]) -> bool:
        """Advance once; True if it should be called again."""
        if self.after_call and self.state in ("content", "start", "done"):
            self.buf = self.buf.lstrip()
            if not self.buf:
                return False
            self.after_call = False
        if self.state == "done":
            out.append(self.buf)
            self.buf = ""
            return False
        if self.state == "start":  # bare JSON: a call only at the start of the answer
            stripped = self.buf.lstrip()
            if not stripped:
                return False
            if stripped[0] in "{[":
                self.raw = self.buf[: len(self.buf) - len(stripped)]
                self.buf = stripped
                self.state = "calls"
            else:
                self.state = "done"
            return True
        if self.state == "content":
            at = self.buf.find(self.prefix)
            if at < 0:
                held = _overlap(self.buf, self.prefix)
                out.append(self.buf[: len(self.buf) - held])
                self.buf = self.buf[len(self.buf) - held :]
                return False
            out.append(self.buf[:at])
            self.raw = self.prefix
            self.buf = self.buf[at + len(self.prefix) :]
            self.state = "calls"
            return True
        return self._calls(out, calls)

    def _calls(self, out: list[str], calls: list[ToolCall]) -> bool:
        stripped = self.buf.lstrip()
        if stripped.startswith(","):  # between the objects of a call list
            stripped = stripped[1:].lstrip()
        if not stripped:
            return False
        skipped = self.buf[: len(self.buf) - len(stripped)]
        if self.suffix and stripped.startswith(self.suffix):
            self.buf = stripped[len(self.suffix) :]
            self._leave_calls(out, self.raw + skipped + self.suffix)
            return True
        if self.suffix and self.suffix.startswith(stripped):
            return False  # maybe the closing tag
        if stripped[0] not in "{[":
            self._leave_calls(out, self.raw + skipped)
            return True
        try:
            value, end = json.JSONDecoder().raw_decode(stripped)
        except json.JSONDecodeError:
            if self.suffix and self.suffix in stripped:  # closed, but not JSON: not a call
                end = stripped.index(self.suffix) + len(self.suffix)
                self.buf = stripped[end:]
                self._reject(out, self.raw + skipped + stripped[:end])
                return True
            return False  # incomplete: wait for more
        found = _calls_in(value, self.names)
        if found is None:
            self.buf = stripped[end:]
            self._reject(out, self.raw + skipped + stripped[:end])
            return True
        for name, arguments in found:
            calls.append(ToolCall(name, arguments, self.count))
            self.count += 1
        self.raw = ""
        self.buf = stripped[end:]
        return True

    def _leave_calls(self, out: list[str], markup: str) -> None:
        """The calls' markup ended; markup with no call in it is content after all."""
        if self.raw:  # no call since the opening tag: `<tool_call></tool_call>`, `<tool_call>x`
            out.append(markup)
            self.after_call = False
        else:
            self.after_call = True
        self.raw = ""
        self.state = "content" if self.prefix else "done"

    def _reject(self, out: list[str], text: str) -> None:
        """JSON that is not a call of a known tool: content, and the markup ends."""
        out.append(text)
        self.raw = ""
        self.after_call = False
        self.state = "content" if self.prefix else "done"

    def flush(self) -> tuple[str, tuple[ToolCall, ...]]:
        """At the end: unterminated call markup with no complete call is content."""
        held, self.buf = self.buf, ""
        if self.state == "calls":
            stripped = held.strip()
            if not self.raw and (not stripped or self.suffix.startswith(stripped)):
                return "", ()  # after complete calls: whitespace or a partial closing tag
            return self.raw + held, ()
        if self.after_call:
            held = held.lstrip()
        return held, ()


def _calls_in(value: Any, names: frozenset[str]) -> list[tuple[str, dict[str, Any]]] | None:
    """The calls a decoded JSON value holds, or None if any part of it is not a call."""
    items = value if isinstance(value, list) else [value]
    found = [_call(item, names) for item in items]
    if not found or any(c is None for c in found):
        return None
    return [c for c in found if c is not None]


def _call(obj: Any, names: frozenset[str]) -> tuple[str, dict[str, Any]] | None:
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("name"), str):
        args: Any = obj.get("arguments", obj.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                return None
        if args is None:
            args = {}
        if not isinstance(args, dict) or obj["name"] not in names:
            return None
        return obj["name"], args
    if isinstance(obj.get("function"), dict):  # {"type": "function", "function": {…}}
        return _call(obj["function"], names)
    if len(obj) == 1:  # {"get_weather": {…}}
        ((name, args),) = obj.items()
        if name in names and isinstance(args, dict):
            return name, args
    return None
