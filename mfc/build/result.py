"""What a build returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfc.build.lockfile import Lock
from mfc.diagnostics.diagnostic import Diagnostic
from mfc.store.manifest import Manifest
from mfc.store.names import ModelName


@dataclass(frozen=True)
class BuildResult:
    name: ModelName | None  # None for a dependency built without a tag
    manifest_digest: str
    manifest: Manifest
    config: Mapping[str, Any]
    lock: Lock
    lock_path: Path | None  # None when built from text
    diagnostics: tuple[Diagnostic, ...] = ()  # warnings (front-end and builder)
