"""Decoded Modelfile text plus a line index: offsets -> 1-based line/column.

Line ends are LF, CRLF and CR (a CRLF counts once), as the grammar defines
them; Unicode line separators are ordinary characters here, as in Ollama.
Columns count characters, not bytes.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from mfc.diagnostics.span import Span

_LINE_END = re.compile(r"\r\n|\r|\n")


def line_starts(text: str) -> list[int]:
    """Offsets where each line begins (line 1 starts at 0)."""
    return [0, *(m.end() for m in _LINE_END.finditer(text))]


@dataclass(frozen=True)
class SourceFile:
    name: str  # path as given by the user ("-" for stdin)
    text: str
    _starts: list[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_starts", line_starts(self.text))

    @property
    def line_count(self) -> int:
        return len(self._starts)

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset (clamped to the text)."""
        offset = max(0, min(offset, len(self.text)))
        index = bisect.bisect_right(self._starts, offset) - 1
        return index + 1, offset - self._starts[index] + 1

    def offset(self, line: int, column: int) -> int:
        index = max(0, min(line - 1, len(self._starts) - 1))
        return min(self._starts[index] + max(column - 1, 0), len(self.text))

    def span(self, start: int, end: int) -> Span:
        size = len(self.text)
        start = 0 if start < 0 else size if start > size else start
        end = start if end < start else size if end > size else end
        starts = self._starts
        i = bisect.bisect_right(starts, start) - 1
        # most spans sit on one line: skip the second search when `end` is before the next line
        if i + 1 < len(starts) and end >= starts[i + 1]:
            j = bisect.bisect_right(starts, end) - 1
        else:
            j = i
        return Span(self.name, i + 1, start - starts[i] + 1, j + 1, end - starts[j] + 1, start, end)

    def line_text(self, line: int) -> str:
        """The text of a 1-based line, without its line end."""
        if not 1 <= line <= len(self._starts):
            return ""
        start = self._starts[line - 1]
        m = _LINE_END.search(self.text, start)
        return self.text[start : m.start() if m else len(self.text)]
