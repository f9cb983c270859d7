"""Build caches: what the builder learned once and must not pay for again.

- stat cache: (device, inode, size, mtime_ns) of an input file → its digest, so
  a warm rebuild of a multi-GB GGUF reads no data at all;
- info cache: blob digest → ``GGUFInfo`` JSON, so it never re-parses a header;
- quantize cache: (input digest, type) → output digest.

Every entry is one small file written atomically, so concurrent builds never
corrupt each other and a crash leaves at worst a missing entry. A hit is only
trusted if the blob it names is still in the store (``gc`` may have removed
it). ``--no-cache`` skips reads but still records fresh entries.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfc.digest import hex_of, is_digest
from mfc.gguf_meta import GGUFInfo
from mfc.store.fsutil import atomic_write_bytes

CACHE_VERSION = 1
_hex = hex_of


@dataclass(frozen=True, slots=True)
class FileKey:
    """Identity of a file's current contents without reading them."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileKey:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def slug(self) -> str:
        return f"{self.device}-{self.inode}-{self.size}-{self.mtime_ns}"


class BuildCache:
    """The builder's caches under one directory (by default inside the store root)."""

    def __init__(self, root: Path, *, read: bool = True):
        self.root = root
        self.read = read  # False for --no-cache: look nothing up, still record

    def _load(self, path: Path) -> Any:
        if not self.read:
            return None
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("v") != CACHE_VERSION:
            return None
        return data.get("value")

    def _store(self, path: Path, value: Any) -> None:
        data = json.dumps({"v": CACHE_VERSION, "value": value}, sort_keys=True).encode()
        # A cache that cannot be written only costs speed.
        with contextlib.suppress(OSError):
            atomic_write_bytes(path, data)

    # stat cache -----------------------------------------------------------
    def file_digest(self, key: FileKey) -> tuple[str, int] | None:
        value = self._load(self.root / "stat" / key.slug())
        if isinstance(value, list) and len(value) == 2 and is_digest(str(value[0])):
            return str(value[0]), int(value[1])
        return None

    def record_file(self, key: FileKey, digest: str, size: int) -> None:
        self._store(self.root / "stat" / key.slug(), [digest, size])

    # GGUF info cache ------------------------------------------------------
    def gguf_info(self, digest: str) -> GGUFInfo | None:
        value = self._load(self.root / "gguf" / f"{_hex(digest)}.json")
        if not isinstance(value, dict):
            return None
        try:
            return GGUFInfo.from_json(value)
        except (TypeError, ValueError, KeyError):
            return None

    def record_gguf_info(self, digest: str, info: GGUFInfo) -> None:
        self._store(self.root / "gguf" / f"{_hex(digest)}.json", info.to_json())

    # quantize cache -------------------------------------------------------
    def quantized(self, digest: str, qtype: str) -> str | None:
        value = self._load(self.root / "quantize" / f"{_hex(digest)}-{qtype}")
        return value if is_digest(value) else None

    def record_quantized(self, digest: str, qtype: str, output: str) -> None:
        self._store(self.root / "quantize" / f"{_hex(digest)}-{qtype}", output)
