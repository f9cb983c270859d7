"""The runner protocol: frames between `mfc serve` and a model's runner process.

Each loaded model lives in its own process (``python -m mfc.server.runner``), so
a segfault or abort inside llama.cpp fails only that model's requests. The two
ends talk over one Unix socket pair, in frames: a 4-byte big-endian length,
then one compact JSON object. JSON keeps the protocol readable in a trace and
costs a few microseconds a frame; the pieces one engine step produced for all
running requests travel as one ``texts`` frame (one wake-up and one parse per
step on each side, not one per stream).

Server → runner (``op``):
  ``load``      model path, adapters ``[[path, scale], …]``, load options, ``n_seq_max``,
                optional ``projector`` (a vision projector's path: images then work)
  ``generate``  ``id``, ``prompt`` (text) or ``tokens``, ``sampling`` options, ``grammar``
                (GBNF), ``logprobs`` (bool) and ``top_logprobs`` (0..20); optional
                ``images``: standard base64 of each image's encoded bytes (PNG, JPEG, …), one
                per ``MEDIA_MARKER`` in ``prompt``, in order (``mfc.runtime.media``). A bad
                image or a count mismatch is an ``error`` for that request only
  ``cancel``    ``id``
  ``tokenize``  ``id``, ``text``
  ``detokenize`` ``id``, ``tokens`` (a ``context`` sent with images becomes text, as Ollama's)
  ``embed``     ``id``, ``inputs``, ``truncate``
  ``counters``  ``id``
  ``exit``

Runner → server (``t``):
  ``loaded``    after ``load`` (``load_ns``), or ``error`` with llama.cpp's reason
  ``texts``     ``items``: ``[[id, text], …]`` — the next pieces of generations, in order;
                with logprobs asked, ``[id, text, logprobs]``: one Ollama Logprob object
                (``token``, ``logprob``, ``bytes``, ``top_logprobs``) per token of ``text``
  ``done``      ``id``, ``stats``, ``tokens`` (the prompt + answer tokens: Ollama's context)
  ``result``    ``id``, ``value`` (tokenize, embed, counters)
  ``error``     ``id``, ``message``, ``kind`` (``prompt_too_long`` with ``n_tokens``/``n_ctx``, …)
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from typing import Any

_HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024  # an embedding batch of a large model fits; garbage does not


class ProtocolError(RuntimeError):
    """The peer sent something that is not a frame (or went away mid-frame)."""


def encode(obj: dict[str, Any]) -> bytes:
    data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    return _HEADER.pack(len(data)) + data


def _decode(data: bytes) -> dict[str, Any]:
    obj = json.loads(data)
    if not isinstance(obj, dict):
        raise ProtocolError("a frame is not a JSON object")
    return obj


# -- blocking side (the runner process) ----------------------------------------------------------


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    chunks: list[bytes] = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            if chunks:
                raise ProtocolError("connection closed mid-frame")
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv(sock: socket.socket) -> dict[str, Any] | None:
    """The next frame, or None at a clean end of stream."""
    header = _recv_exact(sock, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ProtocolError(f"frame of {size} bytes is over the limit")
    body = _recv_exact(sock, size)
    if body is None:
        raise ProtocolError("connection closed mid-frame")
    return _decode(body)


# -- asyncio side (the server) -------------------------------------------------------------------


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("connection closed mid-frame") from None
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ProtocolError(f"frame of {size} bytes is over the limit")
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise ProtocolError("connection closed mid-frame") from None
    return _decode(body)
