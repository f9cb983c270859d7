"""A model's output as content, thinking and tool calls (placeholder: passes text through).

The parsing layer (template-derived tool-call and thinking parsers) replaces this module;
the interface below is what the server and `mfc run` call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: Mapping[str, Any]
    index: int


@dataclass(frozen=True)
class Parsed:
    content: str = ""
    thinking: str = ""
    tool_calls: tuple[ToolCall, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.content or self.thinking or self.tool_calls)


class OutputParser:
    def feed(self, text: str) -> Parsed:
        return Parsed(content=text)

    def finish(self) -> Parsed:
        return Parsed()


def output_parser(
    template: str | None,
    *,
    prompt: str = "",
    tools: Sequence[Mapping[str, Any]] | None = None,
    think: bool | str | None = None,
    family: str | None = None,
) -> OutputParser:
    return OutputParser()
