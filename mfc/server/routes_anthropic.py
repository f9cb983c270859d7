"""Anthropic's Messages API (``/v1/messages``, ``/v1/messages/count_tokens``): handlers that
join the pure translation (``mfc.server.anthropic``) to the dialect-free service.

Clients use the server's root as their base URL (``ANTHROPIC_BASE_URL=http://host:11434``);
``x-api-key``, ``authorization``, ``anthropic-version`` and ``anthropic-beta`` headers and
query strings such as Claude Code's ``?beta=true`` are accepted and ignored. Every error is
Anthropic's shape, ``{"type": "error", "error": {"type", "message"}, "request_id"}``, with
the status the service chose; once a stream has begun, an ``error`` event ends it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from mfc.server import anthropic as an
from mfc.server import ollama as ol
from mfc.server import service
from mfc.server.http import JSON, ApiError, SseEvent, read_body, sse
from mfc.server.service import Delta, Job
from mfc.server.state import ServerState

log = logging.getLogger("mfc.server")

Handler = Callable[[Request, str], Awaitable[Response]]


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.mfc
    return state


def _error(status: int, message: str, rid: str) -> Response:
    return JSON(
        an.error_body(status, message, rid), status_code=status, headers={"request-id": rid}
    )


def _anthropic(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Answer failures in Anthropic's shape (the app's handlers speak Ollama's)."""

    async def endpoint(request: Request) -> Response:
        rid = an.request_id()
        try:
            response = await handler(request, rid)
        except ApiError as exc:
            return _error(exc.status, exc.message, rid)
        except Exception as exc:
            log.exception("%s %s failed", request.method, request.url.path)
            return _error(500, f"internal error: {type(exc).__name__}: {exc}", rid)
        response.headers["request-id"] = rid
        return response

    return endpoint


async def _parse(request: Request, model_cls: type[an.CountTokensRequest]) -> an.CountTokensRequest:
    body = await read_body(request, _state(request).config.max_body_bytes)
    try:
        return ol.parse(model_cls, body)
    except ol.BadRequest as exc:
        raise ApiError(exc.status, exc.message) from None


async def _job(
    state: ServerState, req: ol.ChatRequest, image_fields: list[str] | None = None
) -> Job:
    """The service's job; thinking asked of a model that cannot think is dropped, not refused
    (Ollama's ``relax_thinking`` for this API: Claude Code asks every model to think)."""
    return await service.chat_job(state, req, relax_thinking=True, image_fields=image_fields)


async def _messages(request: Request, rid: str) -> Response:
    state = _state(request)
    req = await _parse(request, an.MessagesRequest)
    assert isinstance(req, an.MessagesRequest)
    try:
        chat = an.messages_request(req)
    except ol.BadRequest as exc:
        raise ApiError(exc.status, exc.message) from None
    job = await _job(state, chat, an.image_fields(req))
    if job.empty:
        raise ApiError(400, "messages: the conversation renders to an empty prompt")
    msg_id = an.message_id()
    if req.stream:
        return await _stream(request, job, req, msg_id)
    got = await service.collect(request, job)
    return JSON(
        an.messages_response(
            msg_id,
            req.model,
            content=got.content,
            thinking=got.thinking,
            tool_calls=got.tool_calls,
            done_reason=got.final.done_reason,
            stop_sequence=got.final.stop_sequence,
            input_tokens=got.final.metrics.prompt_eval_count,
            output_tokens=got.final.metrics.eval_count,
        )
    )


async def _stream(request: Request, job: Job, req: an.MessagesRequest, msg_id: str) -> Response:
    events = await service.stream(request, job)
    converter = an.StreamConverter(msg_id, req.model, an.estimate_tokens(req))

    async def body() -> AsyncIterator[SseEvent]:
        try:
            async for ev in events:
                if isinstance(ev, Delta):
                    out = converter.delta(ev.content, ev.thinking, ev.tool_calls)
                else:
                    m = ev.metrics
                    out = converter.final(
                        ev.done_reason, m.prompt_eval_count, m.eval_count, ev.stop_sequence
                    )
                for item in out:
                    yield item
        finally:
            with contextlib.suppress(Exception):
                await events.aclose()  # type: ignore[attr-defined]

    def on_error(exc: Exception) -> list[SseEvent]:
        status = exc.status if isinstance(exc, ApiError) else 500
        return [converter.error(status, service.error_text(exc))]

    return sse(body(), on_error)


async def _count_tokens(request: Request, rid: str) -> Response:
    """Ollama's estimate (UTF-8 bytes / 4) for a model that exists; Ollama itself has no
    such route. The exact count needs the prompt rendered and tokenized by the runner."""
    state = _state(request)
    req = await _parse(request, an.CountTokensRequest)
    if not req.model:
        raise ApiError(400, "model is required")
    if not req.messages:
        raise ApiError(400, "messages is required")
    await service.open_model(state, req.model)  # 404 for an unknown model
    return JSON(an.count_tokens_response(an.estimate_tokens(req)))


messages = _anthropic(_messages)
count_tokens = _anthropic(_count_tokens)
