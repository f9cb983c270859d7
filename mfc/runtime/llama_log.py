"""llama.cpp's log, routed through Python `logging` (logger ``mfc.llama``).

llama.cpp explains a failure only in its log (``llama_model_load: error
loading model: …``) and then returns NULL or an error code; left alone it
prints everything to stderr, and llama-cpp-python's quiet mode sends it to
/dev/null — which is how a damaged model used to end in a bare ``Aborted``.
Here every line goes to ``logging.getLogger("mfc.llama")`` (silent unless the
application configures logging), the recent warnings and errors are kept so an
`EngineError` can quote llama.cpp's own reason, and error lines are also
written straight to file descriptor 2 as they happen: an abort inside
llama.cpp (which no Python code survives) then still leaves its reason on the
terminal. ``MFC_LLAMA_LOG`` (``none``, ``error``, ``warn``, ``info``,
``debug``; default ``error``) sets what reaches stderr directly. An abort's
own message (``GGML_ASSERT(…) failed``) is printed by ggml itself; its gdb
backtrace is turned off (``GGML_NO_BACKTRACE``) unless the level is ``debug``.

The callback is process-wide (llama.cpp has one); `install` is idempotent and
re-installs it if something else replaced it.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import os
import threading
from typing import Any

logger = logging.getLogger("mfc.llama")
logger.addHandler(logging.NullHandler())  # quiet unless the application configures logging

ENV = "MFC_LLAMA_LOG"
# ggml.h's ggml_log_level: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 (continues the
# last line). llama-cpp-python 0.3.36's _logger.py still documents an older order (INFO 1 …
# DEBUG 4), which files llama.cpp's errors as debug output; measured: a failed load logs at 4.
_LEVELS = {0: logging.INFO, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_STDERR_LEVELS = {
    "none": logging.CRITICAL + 1,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}


class LlamaLog:
    """Collects llama.cpp's log lines; keeps the last warnings and errors."""

    def __init__(self, keep: int = 64):
        self._recent: collections.deque[tuple[int, str]] = collections.deque(maxlen=keep)
        self._serial = 0  # number of warning/error lines ever seen
        self._partial = ""
        self._level = logging.INFO
        self._lock = threading.Lock()
        self._callback: Any = None

    def stderr_level(self) -> int:
        return _STDERR_LEVELS.get(os.environ.get(ENV, "error").strip().lower(), logging.ERROR)

    def mark(self) -> int:
        """A position in the log: `since(mark)` returns what was logged after it."""
        return self._serial  # an int read: no lock (called once per decode step)

    def since(self, mark: int, limit: int = 8) -> list[str]:
        """The warning/error lines logged after `mark` (the last `limit` of them)."""
        with self._lock:
            self._flush_partial()
            lines = [text for serial, text in self._recent if serial > mark]
        return lines[-limit:]

    def feed(self, level: int, text: str) -> None:
        with self._lock:
            if level != 5:
                self._flush_partial()
                self._level = _LEVELS.get(level, logging.INFO)
            self._partial += text
            while "\n" in self._partial:
                line, self._partial = self._partial.split("\n", 1)
                self._emit(line)

    def _flush_partial(self) -> None:
        if self._partial:
            line, self._partial = self._partial, ""
            self._emit(line)

    def _emit(self, line: str) -> None:
        line = line.rstrip()
        if not line:
            return
        level = self._level
        if level >= logging.WARNING:
            self._serial += 1
            self._recent.append((self._serial, line))
        if level >= self.stderr_level():
            # Straight to the file descriptor: survives an abort that follows,
            # and is not swallowed by a redirected sys.stderr.
            with contextlib.suppress(OSError):
                os.write(2, f"llama.cpp: {line}\n".encode("utf-8", "replace"))
        logger.log(level, "%s", line)

    def install(self) -> None:
        """Make llama.cpp (and ggml) log through this object. Call on the engine thread."""
        import llama_cpp

        if self.stderr_level() > logging.DEBUG:
            # On an abort ggml prints its reason and then attaches gdb for a backtrace:
            # pages of noise for a user whose model file is damaged.
            os.environ.setdefault("GGML_NO_BACKTRACE", "1")
        if self._callback is None:

            def callback(level: int, text: bytes | None, user_data: object) -> None:
                with contextlib.suppress(Exception):  # never raise into C
                    self.feed(int(level), (text or b"").decode("utf-8", "replace"))

            self._callback = llama_cpp.llama_log_callback(callback)
        llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))

    def install_mtmd(self) -> None:
        """Route libmtmd's log (the projector loader and image encoder, which keep their own
        logger) here too, so a projector that will not load says why. Engine thread."""
        from llama_cpp import mtmd_cpp

        self.install()
        mtmd_cpp.mtmd_log_set(self._callback, ctypes.c_void_p(0))


LLAMA_LOG = LlamaLog()


def reason(lines: list[str]) -> str:
    """llama.cpp's own words for a failure, for an error message."""
    if not lines:
        return "llama.cpp logged no reason"
    return "llama.cpp said: " + " | ".join(lines)
