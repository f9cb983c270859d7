"""``--locked``: the lock's file digests (checked as files are read) and the final comparison."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mfc.build.lockfile import Drift, Lock, drift, read_lock
from mfc.diagnostics import codes
from mfc.diagnostics.diagnostic import DiagnosticError
from mfc.diagnostics.span import Span
from mfc.modelfile.spec import ModelSpec


def read_lock_quietly(path: Path) -> Lock | None:
    try:
        return read_lock(path)
    except (ValueError, OSError):
        return None


def file_digests(lock: Lock | None, base_dir: Path) -> dict[Path, str]:
    """The file inputs a lock records: real path → digest (shard 1 for a split set)."""
    if lock is None:
        return {}
    found = {}
    for item in lock.inputs:
        if item.kind in ("file", "projector") and item.path is not None:
            found[(base_dir / item.path).resolve()] = item.digest
    return found


def check_lock(
    fresh: Lock, lock_file: Path | None, spec: ModelSpec, spans: Sequence[Span] | None = None
) -> None:
    """MF211 without a lock; one MF210 per difference, on the line of the input that drifted.

    ``spans``: the line of each fresh input, in order (default: FROM, then each ADAPTER)."""
    span = spec.base.span
    if lock_file is None:
        raise codes.LOCK_MISSING.error(
            "--locked needs a Modelfile on disk (there is no lockfile)",
            hint="build from a Modelfile file, or drop --locked",
        )
    try:
        locked = read_lock(lock_file)
    except ValueError as exc:
        raise codes.LOCK_MISSING.error(
            f"--locked: {lock_file} is unreadable", span, hint=str(exc)
        ) from None
    if locked is None:
        raise codes.LOCK_MISSING.error(
            f"--locked: there is no {lock_file.name} next to the Modelfile",
            span,
            hint="build once without --locked to write it, then commit it",
        )
    changes = drift(locked, fresh)
    if not changes and locked.manifest != fresh.manifest:
        changes.append(
            Drift(
                f"the image: locked {locked.manifest}, this build gives {fresh.manifest} "
                "(the Modelfile's text changed, or the builder did)"
            )
        )
    if changes:
        if spans is None:
            spans = [spec.base.span, *(a.span for a in spec.adapters)]
        raise DiagnosticError(
            [
                codes.LOCK_DRIFT(
                    spans[change.input_index] if change.input_index is not None else span,
                    f"--locked: {change.message}",
                    f"rebuild without --locked to update {lock_file.name}",
                    "drifted from the lock",
                )
                for change in changes
            ]
        )
