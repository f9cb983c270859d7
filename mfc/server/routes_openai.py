"""The OpenAI API (``/v1/*``): handlers that read a body, translate it with the pure
``mfc.server.openai`` module into Ollama's request models, run them through the
dialect-free service, and spell the events back as OpenAI's payloads or SSE chunks.

Every failure answers in OpenAI's shape (``{"error": {"message", "type", "param",
"code"}}``) with the status the service chose; the field a native check names
(``format``, ``think``, ``messages[i]``) is reported under the OpenAI field the
client sent (``response_format``, ``reasoning_effort``, ``messages``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mfc.server import ollama as ol
from mfc.server import openai as oa
from mfc.server import service
from mfc.server.http import JSON, ApiError, ClientGone, SseEvent, read_body, sse
from mfc.server.service import Delta, Final, Outcome
from mfc.server.state import ServerState

log = logging.getLogger("mfc.server")

Handler = Callable[[Request], Awaitable[Response]]

# Native fields the service names, as each OpenAI route's client spelled them.
CHAT_PARAMS = {"format": "response_format", "think": "reasoning_effort", "options": None}
COMPLETION_PARAMS = {"options": None, "think": None}
RESPONSES_PARAMS = {"format": "text", "think": "reasoning", "options": None, "messages": "input"}


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.mfc
    return state


def _param(param: str | None, names: Mapping[str, str | None]) -> str | None:
    if param is None:
        return None
    head = re.split(r"[\[.]", param, maxsplit=1)[0]
    return names.get(head, param)


def openai_errors(names: Mapping[str, str | None]) -> Callable[[Handler], Handler]:
    """Answer every refusal of the wrapped handler in OpenAI's error shape."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except ClientGone:
                return Response(status_code=499)
            except oa.Invalid as exc:
                return JSON(oa.error_body(400, exc.message, exc.param), status_code=400)
            except ol.BadRequest as exc:
                return JSON(oa.error_body(exc.status, exc.message), status_code=exc.status)
            except ApiError as exc:
                body = oa.error_body(exc.status, exc.message, _param(exc.param, names))
                return JSON(body, status_code=exc.status)
            except Exception as exc:
                log.exception("%s %s failed", request.method, request.url.path)
                text = f"internal error: {type(exc).__name__}: {exc}"
                return JSON(oa.error_body(500, text), status_code=500)

        return run

    return wrap


async def _parse(request: Request, model_cls: type[ol.M]) -> ol.M:
    body = await read_body(request, _state(request).config.max_body_bytes)
    return oa.parse(model_cls, body)


def _mid_stream_error(exc: Exception) -> list[SseEvent]:
    """A chat or completion stream that breaks: one ``data: {"error": ...}`` event, which the
    SDKs raise as an APIError, and no ``[DONE]``."""
    status = exc.status if isinstance(exc, ApiError) else 500
    return [(None, oa.error_body(status, service.error_text(exc)))]


async def _spell(
    events: AsyncIterator[service.Event],
    on_delta: Callable[[Delta], list[Any]],
    on_final: Callable[[Final], list[Any]],
    name: Callable[[Any], SseEvent],
) -> AsyncIterator[SseEvent]:
    async for ev in events:
        if isinstance(ev, Delta):
            if not (ev.content or ev.thinking or ev.tool_calls or ev.logprobs):
                continue
            items = on_delta(ev)
        else:
            items = on_final(ev)
        for item in items:
            yield name(item)


def _data(item: Any) -> SseEvent:
    return (None, item)


def _empty_outcome() -> Outcome:
    return Outcome("", "", (), (), Final("stop", ol.Metrics()))


# -- chat completions -------------------------------------------------------------------------


@openai_errors(CHAT_PARAMS)
async def chat_completions(request: Request) -> Response:
    r = await _parse(request, oa.ChatCompletionRequest)
    req = oa.chat_request(r)
    job = await service.chat_job(_state(request), req, image_fields=oa.chat_image_fields(r))
    id, created = oa.new_id("chatcmpl-"), int(time.time())
    if req.debug_render_only:
        return JSON(oa.chat_debug(id, r.model, created, job.debug_prompt, len(job.images)))
    if r.stream:
        include = r.stream_options is not None and r.stream_options.include_usage
        chunks = oa.ChatStream(id, r.model, created, include)
        events = await service.stream(request, job)
        return sse(_spell(events, chunks.delta, chunks.final, _data), _mid_stream_error)
    got = await service.collect(request, job)
    return JSON(oa.chat_completion(id, r.model, created, got))


# -- completions ------------------------------------------------------------------------------


@openai_errors(COMPLETION_PARAMS)
async def completions(request: Request) -> Response:
    r = await _parse(request, oa.CompletionRequest)
    req = oa.completion_request(r)
    job = await service.generate_job(_state(request), req)
    id, created = oa.new_id("cmpl-"), int(time.time())
    echo = req.prompt if r.echo else ""
    if req.debug_render_only:
        return JSON(
            {
                **oa.completion(id, r.model, created, _empty_outcome()),
                "_debug_info": {"rendered_template": job.prompt},
            }
        )
    include = r.stream_options is not None and r.stream_options.include_usage
    if job.empty:  # nothing to complete: load the model, answer an empty text (Ollama: "load")
        await job.load_only()
        if not r.stream:
            return JSON(oa.completion(id, r.model, created, _empty_outcome(), echo=echo))
        chunks = oa.CompletionStream(id, r.model, include, echo)

        async def empty() -> AsyncIterator[SseEvent]:
            for item in chunks.final(_empty_outcome().final):
                yield _data(item)

        return sse(empty(), _mid_stream_error)
    if r.stream:
        chunks = oa.CompletionStream(id, r.model, include, echo)
        events = await service.stream(request, job)
        return sse(_spell(events, chunks.delta, chunks.final, _data), _mid_stream_error)
    got = await service.collect(request, job)
    return JSON(oa.completion(id, r.model, created, got, echo=echo))


# -- responses --------------------------------------------------------------------------------


@openai_errors(RESPONSES_PARAMS)
async def responses(request: Request) -> Response:
    r = await _parse(request, oa.ResponsesRequest)
    req = oa.responses_request(r)
    job = await service.chat_job(_state(request), req, image_fields=oa.responses_image_fields(r))
    id, item_id = oa.new_id("resp_", 999999), oa.new_id("msg_", 999999)
    created = int(time.time())
    if r.stream:
        conv = oa.ResponsesStream(r, id, item_id, created)
        events = await service.stream(request, job)

        def failed(exc: Exception) -> list[SseEvent]:
            return list(conv.failed(service.error_text(exc)))

        def named(item: tuple[str, dict[str, Any]]) -> SseEvent:
            return item

        return sse(_spell(events, conv.delta, conv.final, named), failed)
    got = await service.collect(request, job)
    return JSON(oa.to_response(r, id, item_id, got, created, int(time.time())))


# -- embeddings -------------------------------------------------------------------------------


@openai_errors({"options": None})
async def embeddings(request: Request) -> Response:
    r = await _parse(request, oa.EmbeddingRequest)
    req = oa.embed_request(r)
    got = await service.embed(request, _state(request), req)
    return JSON(oa.embedding_list(r.model, got.vectors, got.prompt_tokens, r.encoding_format))


# -- models -----------------------------------------------------------------------------------


@openai_errors({})
async def models(request: Request) -> Response:
    entries = await asyncio.to_thread(_state(request).list_models)
    return JSON(oa.model_list(ol.list_response(entries)["models"]))


@openai_errors({})
async def model(request: Request) -> Response:
    state = _state(request)
    name = str(request.path_params["model"])
    await service.open_model(state, name)  # 400 for a bad name, 404 for an unknown one
    modified = await asyncio.to_thread(_modified, state, name)
    return JSON(oa.model_entry(name, modified))


def _modified(state: ServerState, name: str) -> int:
    from mfc.store.image import read_image

    return int(read_image(state.store, name).modified or 0)
