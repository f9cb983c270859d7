"""The syntax IR: what the Modelfile says, as written, with source spans.

Values are the strings after unquoting (no ARG substitution, no typing; the
semantic pass in ``check`` does that). Spans are excluded from equality, so
two IRs are equal when they mean the same text — ``parse(format(ir)) == ir``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from mfc.diagnostics.span import Span

# Canonical keywords in the order the docs list them; the grammar defines the syntax.
KEYWORDS: tuple[str, ...] = (
    "FROM",
    "PARAMETER",
    "TEMPLATE",
    "SYSTEM",
    "ADAPTER",
    "LICENSE",
    "MESSAGE",
    "REQUIRES",
    "DRAFT",
    "RENDERER",
    "PARSER",
    "ARG",
)

ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")  # `tool`: mfc extension


class Quote(str, enum.Enum):
    """How a value was written (kept for tools; the formatter re-decides)."""

    NONE = ""
    DOUBLE = '"'
    TRIPLE = '"""'


@dataclass(frozen=True, slots=True)
class Flag:
    """An ADAPTER flag: ``--scale=0.5`` is Flag("scale", "0.5")."""

    name: str
    value: str | None
    span: Span | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"--{self.name}" if self.value is None else f"--{self.name}={self.value}"


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str  # canonical upper case: "FROM", "PARAMETER", …
    value: str  # after unquoting
    name: str | None = None  # PARAMETER name
    role: str | None = None  # MESSAGE role
    flags: tuple[Flag, ...] = ()  # ADAPTER flags
    quote: Quote = field(default=Quote.NONE, compare=False)
    span: Span | None = field(default=None, compare=False)  # the whole instruction
    keyword_span: Span | None = field(default=None, compare=False)
    name_span: Span | None = field(default=None, compare=False)  # name or role
    value_span: Span | None = field(default=None, compare=False)  # including quotes

    @property
    def value_offset(self) -> int:
        """Source offset of the value's first character (inside the quotes).

        There are no escape sequences, so character i of ``value`` is at
        ``value_offset + i`` in the source: diagnostics inside a value (a
        template error, a ``${NAME}``) are located exactly.
        """
        if self.value_span is None:
            return 0
        return self.value_span.start + len(self.quote.value)


@dataclass(frozen=True, slots=True)
class Comment:
    text: str  # including the leading `#`, without trailing blanks
    span: Span | None = field(default=None, compare=False)


Item = Instruction | Comment


@dataclass(frozen=True, slots=True)
class Modelfile:
    items: tuple[Item, ...]
    file: str = field(default="Modelfile", compare=False)

    @property
    def instructions(self) -> tuple[Instruction, ...]:
        return tuple(i for i in self.items if isinstance(i, Instruction))
