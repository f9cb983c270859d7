"""HTTP plumbing shared by every API dialect: bodies, errors, NDJSON and SSE streams.

Rules the handlers rely on:
- a body over ``max_body_bytes`` is 413 before it is parsed;
- an ``ApiError`` raised before the first byte is a status + ``{"error": ...}``;
- once a stream has started, an error is a final ``{"error": ...}`` line;
- every stream line is one compact JSON object and ``\\n`` — never a blank line;
- an SSE stream (the OpenAI and Anthropic dialects) is ``[event: name\\n]data: <json>\\n\\n``
  per event; once it has started, an error is a last event the dialect chooses;
- a client that goes away cancels the handler's work (the generator is closed,
  which cancels the runner request).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

log = logging.getLogger("mfc.server")


class ApiError(Exception):
    """A request the server refuses: ``status`` and a message for ``{"error": ...}``.

    ``param`` names the request field at fault (the OpenAI dialect reports it; Ollama's
    body has no place for it); ``extra`` fields go into the native body.
    """

    def __init__(self, status: int, message: str, *, param: str | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **self.extra}


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


class JSON(JSONResponse):
    """Compact JSON; NaN is refused rather than sent as invalid JSON."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


def error_response(exc: ApiError) -> Response:
    return JSON(exc.body(), status_code=exc.status)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) past ``limit`` bytes without reading the rest."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"request body is over the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "the client closed the connection while sending the body") from None
    return b"".join(chunks)


def ndjson(
    lines: AsyncIterator[dict[str, Any]], on_error: Callable[[Exception], str]
) -> StreamingResponse:
    """Stream ``lines`` as NDJSON; an exception mid-stream becomes a final error line."""

    async def body() -> AsyncIterator[bytes]:
        try:
            async for line in lines:
                yield dumps(line) + b"\n"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            yield dumps({"error": on_error(exc)}) + b"\n"
        finally:
            with contextlib.suppress(Exception):
                await lines.aclose()  # type: ignore[attr-defined]

    return StreamingResponse(body(), media_type="application/x-ndjson")


SseEvent = tuple[str | None, Any]  # (event name or None, a JSON value or a raw string)


def sse_bytes(name: str | None, data: Any) -> bytes:
    """One server-sent event: an ``event:`` line when named, a ``data:`` line, a blank line.
    A ``str`` is sent as it is (``[DONE]``), anything else as compact JSON."""
    payload = data.encode() if isinstance(data, str) else dumps(data)
    head = f"event: {name}\n".encode() if name else b""
    return head + b"data: " + payload + b"\n\n"


def sse(
    events: AsyncIterator[SseEvent], on_error: Callable[[Exception], list[SseEvent]]
) -> StreamingResponse:
    """Stream ``events`` as ``text/event-stream``; an exception mid-stream becomes the events
    ``on_error`` returns (the dialect's error event), then the stream ends."""

    async def body() -> AsyncIterator[bytes]:
        try:
            async for name, data in events:
                yield sse_bytes(name, data)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            for name, data in on_error(exc):
                yield sse_bytes(name, data)
        finally:
            with contextlib.suppress(Exception):
                await events.aclose()  # type: ignore[attr-defined]

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)


async def first_or_error(lines: AsyncIterator[dict[str, Any]]) -> dict[str, Any] | None:
    """Pull the first item so errors before any output become a status code, not a 200."""
    try:
        return await lines.__anext__()
    except StopAsyncIteration:
        return None


async def prepend(
    first: dict[str, Any] | None, rest: AsyncIterator[dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    try:
        if first is not None:
            yield first
        async for item in rest:
            yield item
    finally:
        with contextlib.suppress(Exception):
            await rest.aclose()  # type: ignore[attr-defined]


class ClientGone(ApiError):
    """The client closed the connection before the answer: nobody reads the response (499, as
    nginx logs it), and it is not an error of the application to log with a traceback."""

    def __init__(self) -> None:
        super().__init__(499, "the client closed the connection")


async def until_disconnect(request: Request, work: Awaitable[Any]) -> Any:
    """Run ``work``; cancel it if the client disconnects first (non-streamed answers, and a
    stream's wait for its first piece). A disconnect raises ``ClientGone``."""
    task = asyncio.ensure_future(work)
    gone = False

    async def watch() -> None:
        nonlocal gone
        while not task.done():
            message = await request.receive()
            if message["type"] == "http.disconnect":
                gone = True
                task.cancel()
                return

    watcher = asyncio.ensure_future(watch())
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        cancelling = getattr(current, "cancelling", lambda: 0)()  # Python 3.11+
        if gone and not cancelling:  # our own cancel, not the handler's
            raise ClientGone() from None
        raise
    finally:
        watcher.cancel()
        with contextlib.suppress(BaseException):
            await watcher
