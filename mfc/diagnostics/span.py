"""Source positions: every IR node and diagnostic points back into the Modelfile."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    """A half-open region of one source file.

    Lines and columns are 1-based and count characters (not bytes); a CRLF is one
    line end. ``end_line``/``end_column`` point just past the last character.
    ``start``/``end`` are character offsets into the decoded text.
    """

    file: str
    line: int
    column: int
    end_line: int
    end_column: int
    start: int = 0
    end: int = 0

    @classmethod
    def point(cls, file: str, line: int, column: int, offset: int = 0) -> Span:
        return cls(file, line, column, line, column, offset, offset)
