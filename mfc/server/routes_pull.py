"""``POST /api/pull``: the same pull as ``mfc pull`` (``mfc.registry.pull``), its progress
events streamed as Ollama's progress objects.

The pull runs in a worker thread (it blocks on sockets, disk and hashing); each event crosses
to the event loop through ``call_soon_threadsafe`` into a queue the NDJSON stream drains.
``stream: false`` waits and answers the last object (``{"status": "success"}``) or, as
Ollama's ``waitForStream`` does, the error with status 500. A client that disconnects from a
stream stops the pull, as Ollama's request context does: the worker stops at its next progress
report and the parts already on disk stay for the next pull to resume.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mfc.registry.client import RegistryError, RegistryNotFoundError
from mfc.registry.progress import Event, LayerProgress
from mfc.registry.pull import pull as do_pull
from mfc.registry.reference import parse_reference
from mfc.registry.transfer import options_from
from mfc.server import ollama as ol
from mfc.server.http import ApiError, ndjson
from mfc.server.routes_ollama import _parse, _state
from mfc.store import InvalidNameError, StoreError

_END = object()


class _ClientGone(Exception):
    """Raised in the pull's worker when nobody reads its progress any more."""


def progress_line(event: Event) -> dict[str, Any]:
    """Ollama's ``api.ProgressResponse`` for one event."""
    if isinstance(event, LayerProgress):
        return ol.progress(
            event.status, digest=event.digest, total=event.total, completed=event.completed
        )
    return ol.progress(event.text)


def error_text(exc: BaseException) -> str:
    """Ollama's wording where it has one (a missing model: ``pull model manifest: file does
    not exist``), else the registry's or store's own message."""
    if isinstance(exc, RegistryNotFoundError) and "manifest" in str(exc).split(":", 1)[0]:
        return "pull model manifest: file does not exist"
    if isinstance(exc, (RegistryError, StoreError, ValueError)):
        return str(exc)
    return f"internal error: {exc}"


async def pull(request: Request) -> Response:
    req = await _parse(request, ol.PullRequest)
    state = _state(request)
    try:
        ref = parse_reference(req.model)
        options = options_from(state.config.max_transfer_streams)
    except InvalidNameError as exc:
        raise ApiError(400, f"invalid model name: {exc.why}") from None
    except ValueError as exc:
        raise ApiError(500, str(exc)) from None
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    gone = threading.Event()

    def progress(event: Event) -> None:
        if gone.is_set():
            raise _ClientGone()
        loop.call_soon_threadsafe(queue.put_nowait, progress_line(event))

    def work() -> None:
        try:
            do_pull(state.store, ref, insecure=req.insecure, progress=progress, options=options)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, _END)

    task = asyncio.ensure_future(asyncio.to_thread(work))
    # A pull stopped because its client left ends with _ClientGone that nobody awaits.
    task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def lines() -> AsyncIterator[dict[str, Any]]:
        try:
            while (item := await queue.get()) is not _END:
                yield item
            await task  # re-raises the pull's error: the stream's last line
        finally:
            gone.set()  # closed early (the client left): the worker stops at its next report

    if req.stream is False:
        last: dict[str, Any] = {"status": "success"}
        try:
            async for line in lines():
                last = line
        except Exception as exc:
            return JSONResponse(ol.error_body(error_text(exc)), status_code=500)
        return JSONResponse(last)
    return ndjson(lines(), error_text)
