"""Does a GGUF's vocabulary contain given tokens? Asked before using a built-in template.

The header reader of ``mfc.gguf_meta`` keeps ``tokenizer.ggml.tokens`` as the raw
length-prefixed bytes, so a token is found by searching for its encoded form
(8-byte length, then UTF-8) in that buffer: no per-token decoding, a few ms even
for a 128k-token vocabulary. Only the template fallback asks, and answers are
cached per file.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path


def has_tokens(path: Path, texts: Sequence[str]) -> bool:
    """True if every one of ``texts`` is a token of the model at ``path``.

    An unreadable file or one without a token list has none of them.
    """
    if not texts:
        return True
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return False
    return _has_tokens(str(path.resolve()), st.st_size, st.st_mtime_ns, tuple(texts))


@lru_cache(maxsize=32)
def _has_tokens(path: str, size: int, mtime_ns: int, texts: tuple[str, ...]) -> bool:
    del size, mtime_ns  # cache key only: a rewritten file is read again
    from gguf import GGUFValueType

    from mfc.gguf_meta import _reader_class

    try:
        reader = _reader_class()(path)
    except (OSError, ValueError, IndexError, KeyError, OverflowError, struct.error):
        return False
    tokens = reader.get_field("tokenizer.ggml.tokens")
    if tokens is None or tokens.types != [GGUFValueType.ARRAY, GGUFValueType.STRING]:
        return False
    raw = bytes(memoryview(tokens.parts[-1]).cast("B"))  # count-prefixed strings, back to back
    u64 = struct.Struct("<Q" if reader.endianess.name == "LITTLE" else ">Q")
    for text in texts:
        data = text.encode("utf-8")
        if u64.pack(len(data)) + data not in raw:
            return False
    return True
