"""Inter-process file locks (fcntl.flock) that are also safe within a process.

flock locks belong to an open file description, so two opens of the same lock
file in one process would block each other. Exclusive locks are therefore
counted per (process, path) and re-entrant for the thread that holds them;
shared locks are counted so an in-process exclusive request can be refused
instead of deadlocking.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


class LockBusyError(RuntimeError):
    """A non-blocking lock request found the lock held elsewhere."""


@dataclass
class _State:
    mutex: threading.RLock = field(default_factory=threading.RLock)
    exclusive_depth: int = 0
    exclusive_fd: int = -1
    shared: int = 0  # shared holders in this process


_states: dict[str, _State] = {}
_states_guard = threading.Lock()


def _state(path: Path) -> _State:
    key = os.path.realpath(path)
    with _states_guard:
        return _states.setdefault(key, _State())


def _open(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


@contextmanager
def exclusive(path: Path, *, blocking: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on ``path``; re-entrant within a thread."""
    state = _state(path)
    if not state.mutex.acquire(blocking=blocking):
        raise LockBusyError(str(path))
    try:
        if state.exclusive_depth == 0:
            if state.shared:
                raise LockBusyError(f"{path}: held shared by this process")
            fd = _open(path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                raise LockBusyError(str(path)) from None
            state.exclusive_fd = fd
        state.exclusive_depth += 1
        try:
            yield
        finally:
            state.exclusive_depth -= 1
            if state.exclusive_depth == 0:
                fd, state.exclusive_fd = state.exclusive_fd, -1
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
    finally:
        state.mutex.release()


@contextmanager
def shared(path: Path) -> Iterator[None]:
    """Hold a shared lock on ``path`` (blocks while another process holds it exclusively)."""
    state = _state(path)
    with state.mutex:
        if state.exclusive_depth:
            # This thread already holds it exclusively: that covers a shared hold.
            state.shared += 1
            fd = -1
        else:
            fd = None
    if fd is None:
        fd = _open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        except BaseException:
            os.close(fd)
            raise
        with state.mutex:
            state.shared += 1
    try:
        yield
    finally:
        with state.mutex:
            state.shared -= 1
        if fd >= 0:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
