"""One pass over a file's bytes: copy while hashing, hash, or reflink.

Hashing runs in its own thread while the caller's thread reads and writes, so
a copy costs about one hash pass (hashlib and os I/O release the GIL).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import queue
import threading
from collections.abc import Callable
from typing import NamedTuple

from mfc.store.fsutil import write_all

# 1 MiB chunks stay in the CPU cache between the read, the hash and the write;
# 8 buffers keep the hasher and the writer busy while the other catches up.
CHUNK = 1 << 20
BUFFERS = 8
_FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)


class Blob(NamedTuple):
    digest: str  # "sha256:<hex>"
    size: int


Progress = Callable[[int], None]  # called with the bytes done so far


def copy_hashing(
    readinto: Callable[[bytearray], int | None], dst_fd: int, progress: Progress | None = None
) -> Blob:
    """Copy until EOF, hashing in a second thread while this one reads and writes.

    Buffers cycle through a small pool: the hasher returns a buffer after
    hashing it, and this thread writes a buffer before taking another, so no
    buffer is refilled while still in use. hashlib and os I/O release the GIL.
    """
    h = hashlib.sha256()
    free: queue.Queue[bytearray] = queue.Queue()
    for _ in range(BUFFERS):
        free.put(bytearray(CHUNK))
    work: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()
    failure: list[BaseException] = []

    def hasher() -> None:
        try:
            while (item := work.get()) is not None:
                buf, n = item
                h.update(memoryview(buf)[:n])
                free.put(buf)
        except BaseException as exc:  # pragma: no cover - hashlib does not fail
            failure.append(exc)
            free.put(bytearray(CHUNK))

    thread = threading.Thread(target=hasher, name="mfc-hash", daemon=True)
    thread.start()
    size = 0
    try:
        while True:
            buf = free.get()
            n = readinto(buf)
            if not n:
                free.put(buf)
                break
            work.put((buf, n))
            write_all(dst_fd, memoryview(buf)[:n])
            size += n
            if progress is not None:
                progress(size)
    finally:
        work.put(None)
        thread.join()
    if failure:
        raise failure[0]
    return Blob("sha256:" + h.hexdigest(), size)


def hash_fd(fd: int, progress: Progress | None = None) -> Blob:
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    size = 0
    os.lseek(fd, 0, os.SEEK_SET)
    with open(fd, "rb", buffering=0, closefd=False) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
            if progress is not None:
                progress(size)
    return Blob("sha256:" + h.hexdigest(), size)


def reflink(src_fd: int, dst_fd: int) -> bool:
    """Clone src into dst (copy-on-write) if the filesystem supports it."""
    try:
        fcntl.ioctl(dst_fd, _FICLONE, src_fd)
    except OSError:
        return False
    return True
