"""``POST /api/push``: the same ``mfc.registry.push`` as ``mfc push``, its progress streamed
as Ollama's progress objects (``{"status", "digest", "total", "completed"}``).

The push runs in a worker thread (blocking httpx and file reads); its events cross to the
event loop through a queue. The name and the model are checked first, so a bad request is a
400/404 status, not a streamed error line; registry failures after that are streamed as
``{"error": ...}`` (or, with ``stream: false``, answered with a status: 401 refused, 502
registry failed).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mfc.registry.auth import UnauthorizedError
from mfc.registry.client import RegistryError
from mfc.registry.push import UnsupportedRegistryError, check_pushable
from mfc.registry.push import push as push_model
from mfc.server import ollama as ol
from mfc.server.http import JSON, ApiError, ndjson, read_body
from mfc.server.routes_pull import progress_line
from mfc.server.state import ServerState
from mfc.store import InvalidNameError, ModelNotFoundError, StoreError, parse_name


def _api_error(exc: BaseException) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, UnauthorizedError):
        return ApiError(401, str(exc))
    if isinstance(exc, UnsupportedRegistryError):
        return ApiError(400, str(exc))
    if isinstance(exc, RegistryError):
        return ApiError(502, str(exc))
    if isinstance(exc, StoreError):
        return ApiError(500, f"could not read the model: {exc}")
    return ApiError(500, f"internal error: {type(exc).__name__}: {exc}")


async def push(request: Request) -> Response:
    state: ServerState = request.app.state.mfc
    body = await read_body(request, state.config.max_body_bytes)
    try:
        req = ol.parse(ol.PushRequest, body)
    except ol.BadRequest as exc:
        raise ApiError(exc.status, exc.message) from None
    try:
        name = await asyncio.to_thread(state.store.resolve, parse_name(req.model))
        check_pushable(name)
    except InvalidNameError:
        raise ApiError(400, f'invalid model name "{req.model}"') from None
    except ModelNotFoundError:
        raise ApiError(404, f'model "{req.model}" not found') from None
    except UnsupportedRegistryError as exc:
        raise ApiError(400, str(exc)) from None

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()

    def emit(item: dict[str, Any] | BaseException | None) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def work() -> None:
        try:
            push_model(
                state.store,
                name,
                insecure=req.insecure,
                progress=lambda event: emit(progress_line(event)),
            )
        except BaseException as exc:
            emit(exc)
        finally:
            emit(None)

    worker = loop.run_in_executor(None, work)

    async def lines() -> AsyncIterator[dict[str, Any]]:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    if req.stream is False:
        try:
            async for _ in lines():
                pass
        except Exception as exc:
            raise _api_error(exc) from None
        finally:
            await worker
        return JSON({"status": "success"})

    async def stream() -> AsyncIterator[dict[str, Any]]:
        try:
            async for item in lines():
                yield item
        except Exception as exc:
            yield _api_error(exc).body()

    return ndjson(stream(), str)
