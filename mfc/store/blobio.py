"""One pass over a file's bytes: copy while hashing, hash, or reflink.

Hashing runs in its own thread while the caller's thread reads and writes, so
a copy costs about one hash pass (hashlib and os I/O release the GIL).

Copies write with O_DIRECT where the filesystem allows it: a multi-GB blob is
written once and read back later through llama.cpp's mmap, so routing it
through the page cache only costs CPU (measured here: a buffered 1 GiB write
took 3–6 s and 1.5–2.8 CPU-s, an O_DIRECT one 0.9–1.6 s and 0.3–0.5 CPU-s).
Buffers are page-aligned anonymous maps; any unaligned piece (the tail, a
short read) switches the file back to buffered writes for the rest.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import mmap
import os
import queue
import threading
from collections.abc import Callable
from typing import NamedTuple

# 1 MiB chunks stay in the CPU cache between the read, the hash and the write;
# 8 buffers keep the hasher and the writer busy while the other catches up.
CHUNK = 1 << 20
BUFFERS = 8
_FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
_ALIGN = 4096  # O_DIRECT offsets and lengths: a multiple of the block size
_O_DIRECT = getattr(os, "O_DIRECT", 0)


class Blob(NamedTuple):
    digest: str  # "sha256:<hex>"
    size: int


Progress = Callable[[int], None]  # called with the bytes done so far


def _set_direct(fd: int, on: bool) -> bool:
    """Turn O_DIRECT on or off for ``fd``; False if the filesystem refuses."""
    if not _O_DIRECT:
        return False
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, (flags | _O_DIRECT) if on else (flags & ~_O_DIRECT))
    except OSError:
        return False
    return True


class _Writer:
    """Writes chunks, with O_DIRECT while every piece is aligned."""

    def __init__(self, fd: int, direct: bool):
        self.fd = fd
        self.direct = direct and _set_direct(fd, True)

    def _buffered(self) -> None:
        if self.direct:
            _set_direct(self.fd, False)
            self.direct = False

    def write(self, view: memoryview) -> None:
        if self.direct and len(view) % _ALIGN:
            self._buffered()
        while view:
            try:
                written = os.write(self.fd, view)
            except OSError as exc:
                if self.direct and exc.errno == errno.EINVAL:
                    self._buffered()  # alignment the device will not take: go buffered
                    continue
                raise
            view = view[written:]
            if self.direct and written % _ALIGN:
                self._buffered()

    def close(self) -> None:
        self._buffered()


def copy_hashing(
    readinto: Callable[[bytearray], int | None],
    dst_fd: int,
    progress: Progress | None = None,
    *,
    direct: bool = True,
) -> Blob:
    """Copy until EOF, hashing in a second thread while this one reads and writes.

    Buffers cycle through a small pool: the hasher returns a buffer after
    hashing it, and this thread writes a buffer before taking another, so no
    buffer is refilled while still in use. hashlib and os I/O release the GIL.
    """
    h = hashlib.sha256()
    pool = [mmap.mmap(-1, CHUNK) for _ in range(BUFFERS)]  # page-aligned for O_DIRECT
    free: queue.Queue[mmap.mmap] = queue.Queue()
    for buf in pool:
        free.put(buf)
    work: queue.Queue[tuple[mmap.mmap, int] | None] = queue.Queue()

    def hasher() -> None:
        while (item := work.get()) is not None:
            buf, n = item
            with memoryview(buf) as view:
                h.update(view[:n])
            free.put(buf)

    writer = _Writer(dst_fd, direct)
    thread = threading.Thread(target=hasher, name="mfc-hash", daemon=True)
    thread.start()
    size = 0
    try:
        while True:
            buf = free.get()
            n = readinto(buf)  # type: ignore[arg-type]
            if not n:
                free.put(buf)
                break
            work.put((buf, n))
            with memoryview(buf) as view:
                writer.write(view[:n])
            size += n
            if progress is not None:
                progress(size)
    finally:
        work.put(None)
        thread.join()
        writer.close()
        for buf in pool:
            buf.close()
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
