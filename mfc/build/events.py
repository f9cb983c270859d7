"""Build progress as values for a UI: the builder reports, the CLI draws."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BuildEvent:
    """Progress for a UI: ``step`` starts a (maybe long) phase, ``info`` reports a fact,
    ``bytes`` says how far the current step's file has been read (``done`` of ``total``)."""

    kind: str  # "step" | "info" | "bytes"
    message: str
    done: int | None = None
    total: int | None = None


Progress = Callable[[BuildEvent], None]


@dataclass(frozen=True, slots=True)
class Events:
    """Where a build's events go (nowhere without a ``progress`` callback)."""

    progress: Progress | None = None

    def step(self, message: str) -> None:
        if self.progress is not None:
            self.progress(BuildEvent("step", message))

    def info(self, message: str) -> None:
        if self.progress is not None:
            self.progress(BuildEvent("info", message))

    def bytes_read(self, what: str, total: int) -> Callable[[int], None]:
        """A callback for a pass over a file of ``total`` bytes."""
        report = self.progress

        def read_so_far(done: int) -> None:
            if report is not None:
                report(BuildEvent("bytes", what, done, total))

        return read_so_far


def size_text(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError
