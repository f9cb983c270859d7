"""Ollama's native API (``/api/*``): handlers that join the pure translation module
(``mfc.server.ollama``: request models, options, payload shapes) to the store,
the builder and the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mfc.diagnostics.diagnostic import DiagnosticError
from mfc.server import inference
from mfc.server import ollama as ol
from mfc.server.http import JSON, ApiError, first_or_error, ndjson, prepend, until_disconnect
from mfc.server.inference import Conversation, Done, Piece, PromptError
from mfc.server.models import InvalidModelName, ModelNotFound, Prepared, open_image, prepare
from mfc.server.runners import RunnerError
from mfc.server.scheduler import QueueFull
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


def _keep_alive(state: ServerState, value: Any) -> float:
    try:
        return ol.resolve_keep_alive(value, state.config.keep_alive)
    except ol.BadRequest as exc:
        raise ApiError(400, exc.message) from None


async def _open(state: ServerState, name: str | None) -> Any:
    """The model's image, read in a thread (the view may read a GGUF header from disk)."""
    return await asyncio.to_thread(_open_sync, state, name)


def _open_sync(state: ServerState, name: str | None) -> Any:
    if not name:
        raise ApiError(400, "model is required")
    try:
        return open_image(state.store, name)
    except InvalidModelName as exc:
        raise ApiError(400, str(exc)) from None
    except ModelNotFound:
        raise ApiError(404, f'model "{name}" not found') from None
    except DiagnosticError as exc:
        raise ApiError(500, "; ".join(d.message for d in exc.diagnostics)) from None


def _require(
    image: Any, name: str, *, insert: bool = False, tools: bool = False, think: Any = None
) -> None:
    """Ollama's capability checks: a request may only use what the model's template supports."""
    caps = set(image.capabilities())
    wanted = [("insert", insert), ("tools", tools), ("thinking", think not in (None, False))]
    for cap, asked in wanted:
        if asked and cap not in caps:
            raise ApiError(400, f'"{name}" does not support {cap}')


def _prepare(state: ServerState, image: Any, options: Mapping[str, Any] | None) -> Prepared:
    try:
        overrides = ol.resolve_options(options).values
    except ol.BadRequest as exc:
        raise ApiError(400, exc.message) from None
    try:
        return prepare(
            image,
            overrides,
            context_length=state.config.context_length,
            num_parallel=state.config.num_parallel,
            flash_attention=state.config.flash_attention,
            kv_cache_type=state.config.kv_cache_type,
        )
    except (ValueError, TypeError) as exc:
        raise ApiError(400, f"options: {exc}") from None


def _runner_status(exc: RunnerError) -> int:
    return 503 if exc.kind == "shutdown" else 500


def _error_text(exc: Exception) -> str:
    if isinstance(exc, (RunnerError, PromptError)):
        return str(exc)
    return f"internal error: {exc}"


@contextlib.contextmanager
def _as_http() -> Iterator[None]:
    """Scheduling and prompt failures as HTTP statuses: a full queue 503, a prompt that
    cannot be built or does not fit 400, a runner that failed 500 (503 while shutting down)."""
    try:
        yield
    except QueueFull as exc:
        raise ApiError(503, str(exc)) from None
    except PromptError as exc:
        raise ApiError(400, str(exc)) from None
    except RunnerError as exc:
        raise ApiError(_runner_status(exc), str(exc)) from None


async def _guarded(events: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """Map failures before the first event to HTTP statuses (see ``_as_http``)."""
    with _as_http():
        first = await first_or_error(events)
    return prepend(first, events)


async def _respond(
    request: Request,
    stream: bool,
    events: AsyncIterator[Piece | Done],
    chunk: Callable[[str], dict[str, Any]],
    final: Callable[[Done, str], dict[str, Any]],
) -> Response:
    """NDJSON (a chunk per piece, then the final object), or one object with the whole text."""
    # Until the first piece there is no response whose disconnect Starlette watches: a request
    # waiting for a slot (or for its model to load) must still notice that its client left.
    guarded = await until_disconnect(request, _guarded(events))
    if stream:

        async def lines() -> AsyncIterator[dict[str, Any]]:
            async for ev in guarded:
                if isinstance(ev, Piece):
                    if ev.text:
                        yield chunk(ev.text)
                else:
                    yield final(ev, "")

        return ndjson(lines(), _error_text)

    async def collect() -> dict[str, Any]:
        parts: list[str] = []
        # Closed here, not whenever the garbage collector gets to it: closing releases the
        # model (keep_alive 0 unloads it) before the answer is sent.
        async with contextlib.aclosing(guarded):
            async for ev in guarded:
                if isinstance(ev, Piece):
                    parts.append(ev.text)
                else:
                    return final(ev, "".join(parts))
        raise RunnerError("the generation ended without a result")

    try:
        return JSON(await until_disconnect(request, collect()))
    except RunnerError as exc:
        raise ApiError(_runner_status(exc), str(exc)) from None
    except PromptError as exc:
        raise ApiError(500, str(exc)) from None


# -- generate -----------------------------------------------------------------------------------


async def generate(request: Request) -> Response:
    state = _state(request)
    req = await _parse(request, ol.GenerateRequest)
    keep_alive = _keep_alive(state, req.keep_alive)
    if req.images:
        raise ApiError(
            400, f'"{req.model}" does not support images (mfc has no vision support yet)'
        )
    if req.width or req.height or req.steps:
        raise ApiError(400, "image generation models are not currently supported")
    if req.raw and (req.template or req.system or req.context):
        raise ApiError(400, "raw mode does not support template, system, or context")
    image = await _open(state, req.model)
    _require(image, req.model, insert=bool(req.suffix), think=req.think)
    prepared = _prepare(state, image, req.options)
    fmt = _format(req.format)
    info = state.model_info(req.model, image)
    if not req.prompt and not req.suffix and not req.debug_render_only:
        return await _load_only(state, req.model, prepared, keep_alive, info, chat=False)
    if req.raw:
        text = req.prompt
    else:
        conv = Conversation(
            [{"role": "user", "content": req.prompt}],
            think=req.think,
            template_override=req.template or None,
            system_override=req.system or None,
            image_messages=False,
        )
        try:
            text = await asyncio.to_thread(inference.build_prompt, image, conv)
        except PromptError as exc:
            raise ApiError(400, str(exc)) from None
    if req.debug_render_only:
        return JSON(ol.generate_debug(req.model, text))

    async def events() -> AsyncIterator[Piece | Done]:
        prompt: str | list[int] = text
        if req.context:  # the tokens of an earlier answer, then the new text
            prompt = await _tokens_with_context(state, req.model, prepared, req.context, text, info)
        async for ev in inference.generate(
            state.scheduler,
            req.model,
            prepared,
            prompt,
            keep_alive=keep_alive,
            grammar=fmt,
            info=info,
        ):
            yield ev

    def chunk(piece: str) -> dict[str, Any]:
        return ol.generate_chunk(req.model, piece)

    def final(done: Done, whole: str) -> dict[str, Any]:
        return ol.generate_final(
            req.model,
            done_reason=_reason(done),
            metrics=_metrics(done),
            context=None if req.raw else list(done.tokens),
            text=whole,
        )

    return await _respond(request, req.stream is not False, events(), chunk, final)


async def _tokens_with_context(
    state: ServerState,
    name: str,
    prepared: Prepared,
    context: list[int],
    text: str,
    info: dict[str, Any],
) -> list[int]:
    async with state.scheduler.use(name, prepared.spec, None, info) as model:
        new = await model.runner.call("tokenize", text=text)
    return [int(t) for t in context] + [int(t) for t in new]


def _format(value: Any) -> str | None:
    """The request's ``format`` as GBNF (converted here, so a bad schema is a 400)."""
    from mfc.runtime.structured import SchemaError, grammar_for

    try:
        return grammar_for(ol.resolve_format(value))
    except ol.BadRequest as exc:
        raise ApiError(400, exc.message) from None
    except SchemaError as exc:
        raise ApiError(400, f"format: {exc}") from None


def _reason(ev: Done) -> Any:
    reason = str(ev.stats.get("done_reason", "stop"))
    return "stop" if reason == "cancel" else reason


def _metrics(ev: Done) -> ol.Metrics:
    s = ev.stats
    return ol.Metrics(
        total_duration=int(ev.total_ns),
        load_duration=int(ev.load_ns),
        prompt_eval_count=int(s.get("prompt_eval_count", 0)),
        prompt_eval_duration=int(s.get("prompt_eval_duration", 0)),
        eval_count=int(s.get("eval_count", 0)),
        eval_duration=int(s.get("eval_duration", 0)),
    )


async def _load_only(
    state: ServerState,
    name: str,
    prepared: Prepared,
    keep_alive: float,
    info: dict[str, Any],
    *,
    chat: bool,
) -> Response:
    """An empty prompt loads the model (``done_reason: load``); keep_alive 0 unloads it."""
    if keep_alive <= 0:
        await state.scheduler.unload(prepared.spec.digest)
        reason = "unload"
    else:
        try:
            async with state.scheduler.use(name, prepared.spec, keep_alive, info):
                pass
        except QueueFull as exc:
            raise ApiError(503, str(exc)) from None
        except RunnerError as exc:
            raise ApiError(_runner_status(exc), str(exc)) from None
        reason = "load"
    lifecycle = ol.chat_lifecycle if chat else ol.generate_lifecycle
    return JSON(lifecycle(name, reason))  # type: ignore[arg-type]


# -- chat ---------------------------------------------------------------------------------------


async def chat(request: Request) -> Response:
    state = _state(request)
    req = await _parse(request, ol.ChatRequest)
    keep_alive = _keep_alive(state, req.keep_alive)
    image = await _open(state, req.model)
    _require(image, req.model, tools=bool(req.tools), think=req.think)
    prepared = _prepare(state, image, req.options)
    fmt = _format(req.format)
    info = state.model_info(req.model, image)
    if not req.messages and not req.debug_render_only:
        return await _load_only(state, req.model, prepared, keep_alive, info, chat=True)
    for i, m in enumerate(req.messages):
        if m.images:
            raise ApiError(
                400, f'messages[{i}].images: "{req.model}" does not support images (no vision yet)'
            )
    messages = [_template_message(m) for m in req.messages]
    tools = [t.model_dump(by_alias=True, exclude_defaults=True) for t in req.tools or []]
    conv = Conversation(messages, tools=tools or None, think=req.think)
    try:
        prompt = await asyncio.to_thread(inference.build_prompt, image, conv)
    except PromptError as exc:
        raise ApiError(400, str(exc)) from None
    if req.debug_render_only:
        return JSON(ol.chat_debug(req.model, prompt))

    def chunk(piece: str) -> dict[str, Any]:
        return ol.chat_chunk(req.model, piece)

    def final(done: Done, whole: str) -> dict[str, Any]:
        return ol.chat_final(
            req.model, done_reason=_reason(done), metrics=_metrics(done), content=whole
        )

    events = inference.generate(
        state.scheduler, req.model, prepared, prompt, keep_alive=keep_alive, grammar=fmt, info=info
    )
    return await _respond(request, req.stream is not False, events, chunk, final)


def _template_message(m: ol.Message) -> dict[str, Any]:
    """A chat message as templates see it (Ollama's field names; empty fields left out)."""
    out = m.model_dump(by_alias=True, exclude_defaults=True)
    out.setdefault("role", m.role)
    out.setdefault("content", m.content)
    return out


# -- embeddings ---------------------------------------------------------------------------------


async def embed(request: Request) -> Response:
    state = _state(request)
    req = await _parse(request, ol.EmbedRequest)
    keep_alive = _keep_alive(state, req.keep_alive)
    image = await _open(state, req.model)
    prepared = _prepare(state, image, req.options)
    inputs = [req.input] if isinstance(req.input, str) else list(req.input or [])
    if inputs == [""]:
        inputs = []
    start = time.perf_counter_ns()
    if not inputs:
        return JSON(ol.embed_response(req.model, []))
    vectors, count, load_ns = await _embed(
        request, state, req.model, image, prepared, inputs, req.truncate is not False, keep_alive
    )
    if req.dimensions:
        vectors = [_truncate_normalize(v, req.dimensions) for v in vectors]
    metrics = ol.Metrics(
        total_duration=time.perf_counter_ns() - start,
        load_duration=load_ns,
        prompt_eval_count=count,
    )
    return JSON(ol.embed_response(req.model, vectors, metrics=metrics))


async def _embed(
    request: Request,
    state: ServerState,
    name: str,
    image: Any,
    prepared: Prepared,
    inputs: list[str],
    truncate: bool,
    keep_alive: float,
) -> tuple[list[list[float]], int, int]:
    info = state.model_info(name, image)
    with _as_http():
        result: tuple[list[list[float]], int, int] = await until_disconnect(
            request,
            inference.embed(
                state.scheduler,
                name,
                prepared,
                inputs,
                truncate=truncate,
                keep_alive=keep_alive,
                info=info,
            ),
        )
    return result


def _truncate_normalize(vector: list[float], n: int) -> list[float]:
    head = vector[:n]
    norm = math.sqrt(sum(x * x for x in head))
    return [x / norm for x in head] if norm > 0 else head


async def embeddings(request: Request) -> Response:
    """Legacy ``/api/embeddings``: one prompt, one vector (Ollama does not normalise it)."""
    state = _state(request)
    req = await _parse(request, ol.EmbeddingsRequest)
    keep_alive = _keep_alive(state, req.keep_alive)
    image = await _open(state, req.model)
    prepared = _prepare(state, image, req.options)
    if not req.prompt:
        return JSON(ol.embeddings_response([]))
    vectors, _count, _load = await _embed(
        request, state, req.model, image, prepared, [req.prompt], True, keep_alive
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
    await _open(state, req.model)  # 400/404 as Ollama
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


async def not_implemented(request: Request) -> Response:
    what = request.url.path.rsplit("/", 1)[-1]
    raise ApiError(
        501,
        f"/api/{what} is not implemented yet: registries come with a later mfc release; "
        "meanwhile use `mfc save`/`mfc load` to move models between machines",
    )
