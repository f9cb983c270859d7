"""Ollama's native API (``/api/*``): handlers that join the pure translation module
(``mfc.server.ollama``: request models, options, payload shapes) to the store and the
dialect-free service (``mfc.server.service``: checks, prompt, scheduling, output parsing).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mfc.diagnostics.diagnostic import DiagnosticError
from mfc.server import ollama as ol
from mfc.server import service
from mfc.server.http import JSON, ApiError, ndjson
from mfc.server.runners import RunnerError
from mfc.server.service import Delta, Final, Job, ToolCall
from mfc.server.state import ServerState


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.mfc
    return state


async def _parse(request: Request, model_cls: type[Any]) -> Any:
    state = _state(request)
    from mfc.server.http import read_body

    body = await read_body(request, state.config.max_body_bytes)
    try:
        return ol.parse(model_cls, body)
    except ol.BadRequest as exc:
        raise ApiError(exc.status, exc.message) from None


def _calls(calls: Sequence[ToolCall]) -> list[dict[str, Any]] | None:
    """Ollama's tool-call objects: ``{"id", "function": {"index", "name", "arguments"}}``."""
    if not calls:
        return None
    return [
        {
            "id": c.id,
            "function": {"index": c.index, "name": c.name, "arguments": dict(c.arguments)},
        }
        for c in calls
    ]


def _logprobs(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
    return [dict(e) for e in entries] if entries else None


async def _respond(request: Request, job: Job, stream: bool, *, chat: bool) -> Response:
    """NDJSON (a chunk per delta, then the final object), or one object with everything."""
    name = job.name

    def chunk(d: Delta) -> dict[str, Any]:
        if chat:
            out = ol.chat_chunk(
                name, d.content, thinking=d.thinking, tool_calls=_calls(d.tool_calls)
            )
        else:
            out = ol.generate_chunk(name, d.content, thinking=d.thinking)
        if d.logprobs:
            out["logprobs"] = _logprobs(d.logprobs)
        return out

    def final(
        f: Final,
        content: str = "",
        thinking: str = "",
        calls: Sequence[ToolCall] = (),
        logprobs: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        if chat:
            out = ol.chat_final(
                name,
                done_reason=f.done_reason,  # type: ignore[arg-type]
                metrics=f.metrics,
                content=content,
                thinking=thinking,
                tool_calls=_calls(calls),
            )
        else:
            out = ol.generate_final(
                name,
                done_reason=f.done_reason,  # type: ignore[arg-type]
                metrics=f.metrics,
                context=None if job.raw else list(f.context),
                text=content,
                thinking=thinking,
            )
        if logprobs:
            out["logprobs"] = _logprobs(logprobs)
        return out

    if stream:
        events = await service.stream(request, job)

        async def lines() -> AsyncIterator[dict[str, Any]]:
            async for ev in events:
                if isinstance(ev, Delta):
                    if ev.content or ev.thinking or ev.tool_calls or ev.logprobs:
                        yield chunk(ev)
                else:
                    yield final(ev)

        return ndjson(lines(), service.error_text)

    got = await service.collect(request, job)
    return JSON(final(got.final, got.content, got.thinking, got.tool_calls, got.logprobs))


async def _load_only(job: Job, *, chat: bool) -> Response:
    """An empty prompt loads the model (``done_reason: load``); keep_alive 0 unloads it."""
    reason = await job.load_only()
    lifecycle = ol.chat_lifecycle if chat else ol.generate_lifecycle
    return JSON(lifecycle(job.name, reason))  # type: ignore[arg-type]


# -- generate -----------------------------------------------------------------------------------


async def generate(request: Request) -> Response:
    state = _state(request)
    req = await _parse(request, ol.GenerateRequest)
    job = await service.generate_job(state, req)
    if req.debug_render_only:
        return JSON(ol.generate_debug(req.model, job.debug_prompt, image_count=len(job.images)))
    if job.empty:
        return await _load_only(job, chat=False)
    return await _respond(request, job, req.stream is not False, chat=False)


# -- chat ---------------------------------------------------------------------------------------


async def chat(request: Request) -> Response:
    state = _state(request)
    req = await _parse(request, ol.ChatRequest)
    job = await service.chat_job(state, req)
    if req.debug_render_only:
        return JSON(ol.chat_debug(req.model, job.debug_prompt, image_count=len(job.images)))
    if job.empty:
        return await _load_only(job, chat=True)
    return await _respond(request, job, req.stream is not False, chat=True)


# -- embeddings ---------------------------------------------------------------------------------


async def embed(request: Request) -> Response:
    state = _state(request)
    req = await _parse(request, ol.EmbedRequest)
    got = await service.embed(request, state, req)
    if not got.vectors:
        return JSON(ol.embed_response(req.model, []))
    return JSON(ol.embed_response(req.model, got.vectors, metrics=got.metrics))


async def embeddings(request: Request) -> Response:
    """Legacy ``/api/embeddings``: one prompt, one vector (Ollama does not normalise it)."""
    state = _state(request)
    req = await _parse(request, ol.EmbeddingsRequest)
    alive = service.keep_alive(state, req.keep_alive)
    image = await service.open_model(state, req.model)
    prepared = service.prepare_options(state, image, req.options)
    if not req.prompt:
        return JSON(ol.embeddings_response([]))
    vectors, _count, _load = await service.embed_raw(
        request, state, req.model, image, prepared, [req.prompt], True, alive
    )
    return JSON(ol.embeddings_response(vectors[0]))


# -- models -------------------------------------------------------------------------------------


async def tags(request: Request) -> Response:
    state = _state(request)
    entries = await asyncio.to_thread(state.list_models)
    return JSON(ol.list_response(entries))


async def ps(request: Request) -> Response:
    state = _state(request)
    return JSON(ol.ps_response([state.ps_entry(m) for m in state.scheduler.ps()]))


async def engines(request: Request) -> Response:
    """mfc extension: each loaded model's runner and its engine counters (tests, debugging)."""
    state = _state(request)
    out = []
    for model in state.scheduler.ps():
        try:
            counters = await model.runner.call("counters")
        except RunnerError as exc:
            counters = {"error": str(exc)}
        out.append(
            {
                "name": model.name,
                "digest": model.spec.digest,
                "pid": model.runner.pid,
                "active": model.active,
                "counters": counters,
            }
        )
    return JSON({"models": out})


async def show(request: Request) -> Response:
    state = _state(request)
    req = await _parse(request, ol.ShowRequest)
    if not req.model:
        raise ApiError(400, "model is required")
    await service.open_model(state, req.model)  # 400/404 as Ollama
    try:
        payload = await asyncio.to_thread(state.show, req.model, bool(req.verbose))
    except DiagnosticError as exc:
        raise ApiError(500, "; ".join(d.message for d in exc.diagnostics)) from None
    return JSON(payload)


async def copy(request: Request) -> Response:
    state = _state(request)
    req = await _parse(request, ol.CopyRequest)
    from mfc.store import InvalidNameError, ModelNotFoundError, parse_name

    for field, value in (("source", req.source), ("destination", req.destination)):
        try:
            parse_name(value)
        except InvalidNameError:
            raise ApiError(400, f'{field} "{value}" is invalid') from None
    try:
        await asyncio.to_thread(state.store.copy, req.source, req.destination)
    except ModelNotFoundError:
        raise ApiError(404, f'model "{req.source}" not found') from None
    return Response(status_code=200)


async def delete(request: Request) -> Response:
    state = _state(request)
    req = await _parse(request, ol.DeleteRequest)
    from mfc.store import InvalidNameError, ModelNotFoundError

    try:
        manifest = await asyncio.to_thread(state.store.read_manifest, req.model)
        await asyncio.to_thread(state.store.remove, req.model)
    except InvalidNameError:
        raise ApiError(400, f'invalid model name "{req.model}"') from None
    except ModelNotFoundError:
        raise ApiError(404, f'model "{req.model}" not found') from None
    with contextlib.suppress(Exception):
        await state.scheduler.unload(manifest.digest)
    if not state.config.noprune:
        await asyncio.to_thread(state.prune)
    return Response(status_code=200)
