"""Turning sampled token pieces into the text a user sees.

Two things go wrong if pieces are printed as they come: a multi-byte UTF-8
character split across tokens prints as garbage, and a stop string split across
tokens leaks its first half before generation stops. `TextStream` holds back
exactly as much as needed for both and no more, so streaming stays immediate.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from dataclasses import dataclass, field


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of `text` that could still grow into a stop string."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest


@dataclass
class TextStream:
    """Feed token bytes in, get printable text out; reports when a stop string appears.

    `feed` returns the text that is now safe to show. Once a stop string is seen,
    `stopped` is true and the text before it has been returned; nothing after it is.
    """

    stops: Sequence[str] = ()
    stopped: bool = False
    matched: str = ""  # the stop string that ended the text (Anthropic reports which)
    _pending: str = ""
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )

    def feed(self, piece: bytes) -> str:
        if self.stopped:
            return ""
        text = self._pending + self._decoder.decode(piece)
        return self._release(text)

    def finish(self) -> str:
        """Flush what was held back (generation ended without a stop string)."""
        if self.stopped:
            return ""
        text = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        cut = self._first_stop(text)
        if cut is not None:
            self.stopped = True
            return text[:cut]
        return text

    def _first_stop(self, text: str) -> int | None:
        hits = [(i, s) for s in self.stops if s for i in (text.find(s),) if i >= 0]
        if not hits:
            return None
        cut, self.matched = min(hits, key=lambda hit: hit[0])
        return cut

    def _release(self, text: str) -> str:
        cut = self._first_stop(text)
        if cut is not None:
            self.stopped = True
            self._pending = ""
            return text[:cut]
        keep = _held_back(text, [s for s in self.stops if s])
        self._pending = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]
