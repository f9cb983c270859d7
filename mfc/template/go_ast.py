"""The parsed form of a Go ``text/template``: the subset Ollama templates use.

Nodes are frozen and carry ``pos``, a character offset into the template text,
so errors and the Jinja translation can point back at the source.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Field:
    """``.A.B`` — field lookup on dot."""

    idents: tuple[str, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class Variable:
    """``$`` or ``$x``, optionally followed by fields (``$.Messages``, ``$m.Role``)."""

    name: str  # "$" or "$x"
    idents: tuple[str, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class Dot:
    pos: int


@dataclass(frozen=True, slots=True)
class Nil:
    pos: int


@dataclass(frozen=True, slots=True)
class Bool:
    value: bool
    pos: int


@dataclass(frozen=True, slots=True)
class Number:
    value: int | float
    pos: int


@dataclass(frozen=True, slots=True)
class String:
    value: str
    pos: int


@dataclass(frozen=True, slots=True)
class Identifier:
    """A function name (``len``, ``eq``, ``json`` …)."""

    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class Chain:
    """``(pipeline).Field`` — field lookup on the result of a term."""

    node: Arg
    idents: tuple[str, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class Command:
    args: tuple[Arg, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class Pipe:
    decl: tuple[str, ...]  # variable names declared (":=") or assigned ("=")
    assign: bool  # True for "=", False for ":="
    cmds: tuple[Command, ...]
    pos: int


Arg = Field | Variable | Dot | Nil | Bool | Number | String | Identifier | Chain | Pipe


@dataclass(frozen=True, slots=True)
class Text:
    text: str  # after trim markers were applied
    pos: int


@dataclass(frozen=True, slots=True)
class Action:
    pipe: Pipe
    pos: int


@dataclass(frozen=True, slots=True)
class Branch:
    """``if`` / ``range`` / ``with``: ``orelse`` is None when there is no ``else``."""

    kind: str  # "if" | "range" | "with"
    pipe: Pipe
    body: tuple[Node, ...]
    orelse: tuple[Node, ...] | None
    pos: int
    chained: bool = False  # came from `{{ else if }}` / `{{ else with }}`
    else_pos: int = -1
    end_pos: int = -1


@dataclass(frozen=True, slots=True)
class LoopControl:
    keyword: str  # "break" | "continue"
    pos: int


Node = Text | Action | Branch | LoopControl
