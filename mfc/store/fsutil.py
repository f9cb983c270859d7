"""Durable file operations: atomic replace and directory fsync.

A reader (or a crash) sees either the old file or the complete new one, never
a partial write: write a temp file in the same filesystem, fsync it, rename it
over the target, fsync the directory so the rename itself is durable.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def atomic_write_bytes(
    path: Path, data: bytes, *, tmp_dir: Path | None = None, mode: int = 0o644
) -> None:
    """Replace ``path`` with ``data`` atomically (temp + fsync + rename).

    ``tmp_dir`` must be on the same filesystem as ``path`` (default: its
    directory). Missing parent directories are created.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_parent = tmp_dir if tmp_dir is not None else path.parent
    tmp_parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=tmp_parent, prefix=".tmp-", suffix="-" + path.name)
    try:
        try:
            write_all(fd, data)
            os.fchmod(fd, mode & ~_umask())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_dir(path.parent)


def _umask() -> int:
    # Reading the umask means setting it; do it once per call site, restoring at once.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
