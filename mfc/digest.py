"""Content digests: the one spelling of ``sha256:<64 lowercase hex>`` in mfc.

Blobs, manifests, caches, lockfiles and ``FROM name@sha256:…`` all name content
the same way; this module is the only place that knows the algorithm prefix,
the hex alphabet and the length, so a check in the front-end and a check in the
store can never disagree. Ollama's on-disk blob files spell the colon as ``-``
(``sha256-<hex>``); ``from_filename``/``filename`` convert.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, TypeGuard

PREFIX = "sha256:"
HEX = "[0-9a-f]{64}"  # the hex part, for schemas and patterns that embed it
DIGEST_RE = re.compile(rf"sha256:{HEX}\Z")
_FILE_OR_DIGEST_RE = re.compile(rf"sha256[:-]({HEX})\Z")


def is_digest(text: object) -> TypeGuard[str]:
    """True for exactly ``sha256:`` + 64 lowercase hex digits."""
    return isinstance(text, str) and DIGEST_RE.match(text) is not None


def of_bytes(data: bytes) -> str:
    """The digest of ``data``."""
    return PREFIX + hashlib.sha256(data).hexdigest()


def of_hash(h: Any) -> str:
    """The digest a finished ``hashlib.sha256()`` object stands for."""
    return PREFIX + h.hexdigest()


def hex_of(digest: str) -> str:
    """The 64 hex digits of a digest; ValueError for anything else."""
    if not is_digest(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return digest[len(PREFIX) :]


def normalize(text: str) -> str | None:
    """``sha256:<hex>`` or ``sha256-<hex>`` (a blob file name) as a digest, else None."""
    m = _FILE_OR_DIGEST_RE.match(text)
    return PREFIX + m.group(1) if m else None
