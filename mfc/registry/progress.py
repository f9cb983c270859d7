"""One progress interface for push and pull, whoever shows it.

The CLI draws it with rich; the server's /api/pull and /api/push stream it as Ollama's
progress objects (``{"status": "pulling 1a2b3c4d5e6f", "digest", "total", "completed"}``).
Events are plain values so a transfer thread can hand them to an event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Status:
    """A step without a size: "pulling manifest", "verifying sha256 digest", "writing
    manifest", "success" (Ollama's words)."""

    text: str


@dataclass(frozen=True)
class LayerProgress:
    """Bytes of one blob: ``verb`` is "pulling" or "pushing"; Ollama names the layer by the
    first 12 hex digits of its digest."""

    verb: str
    digest: str
    total: int
    completed: int

    @property
    def status(self) -> str:
        return f"{self.verb} {self.digest.removeprefix('sha256:')[:12]}"


Event = Status | LayerProgress


class Progress(Protocol):
    def __call__(self, event: Event) -> None: ...


def silent(event: Event) -> None:
    """A Progress that shows nothing."""
