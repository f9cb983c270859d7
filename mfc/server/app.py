"""The ASGI application of `mfc serve`: routes, guards, error handling, lifecycle.

Starlette, not FastAPI: the request models live in ``mfc.server.ollama``
(pydantic), the handlers parse bodies themselves (Ollama accepts JSON without
a Content-Type and has its own error texts), and ``/openapi.json`` is built
from those same models.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mfc.server import create as create_mod
from mfc.server import ollama as ol
from mfc.server import push_route, routes_anthropic, routes_pull
from mfc.server import routes_ollama as api
from mfc.server import routes_openai as v1
from mfc.server.config import ServerConfig
from mfc.server.guard import Guard
from mfc.server.http import JSON, ApiError, error_response, read_body
from mfc.server.scheduler import Scheduler
from mfc.server.state import ServerState
from mfc.store import Store

log = logging.getLogger("mfc.server")

# The Ollama API level mfc implements, for clients that gate features on /api/version.
# /v1/responses (OpenAI's Responses API) first shipped in 0.13.3 and Codex requires 0.13.4
# (its min_responses_version); 0.13.4 itself changed the Responses translation (tool calls
# appended to the previous assistant message), which mfc follows. docs/serve.md explains.
OLLAMA_API_VERSION = "0.13.4"


def _mfc_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mfc")
    except PackageNotFoundError:
        return "unknown"


async def root(request: Request) -> Response:
    return PlainTextResponse("Ollama is running")


async def version(request: Request) -> Response:
    return JSON({"version": OLLAMA_API_VERSION, "mfc_version": _mfc_version()})


async def openapi(request: Request) -> Response:
    return JSON(ol.openapi(version=OLLAMA_API_VERSION))


async def create(request: Request) -> Response:
    state: ServerState = request.app.state.mfc
    body = await read_body(request, state.config.max_body_bytes)
    try:
        req = ol.parse(ol.CreateRequest, body)
    except ol.BadRequest as exc:
        raise ApiError(exc.status, exc.message) from None
    return await create_mod.create(request, req, state.store)


async def blob(request: Request) -> Response:
    state: ServerState = request.app.state.mfc
    if request.method == "HEAD":
        return await create_mod.head_blob(request, state.store)
    return await create_mod.post_blob(request, state.store)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("%s %s failed", request.method, request.url.path)
    return JSON({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)


async def _not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    text = "404 page not found" if status == 404 else "405 method not allowed"
    return PlainTextResponse(text, status_code=status)


ROUTES = [
    Route("/", root, methods=["GET", "HEAD"]),
    Route("/api/version", version, methods=["GET", "HEAD"]),
    Route("/api/generate", api.generate, methods=["POST"]),
    Route("/api/chat", api.chat, methods=["POST"]),
    Route("/api/tags", api.tags, methods=["GET", "HEAD"]),
    Route("/api/show", api.show, methods=["POST"]),
    Route("/api/copy", api.copy, methods=["POST"]),
    Route("/api/delete", api.delete, methods=["DELETE"]),
    Route("/api/ps", api.ps, methods=["GET"]),
    Route("/api/create", create, methods=["POST"]),
    Route("/api/blobs/{digest}", blob, methods=["HEAD", "POST"]),
    Route("/api/embed", api.embed, methods=["POST"]),
    Route("/api/embeddings", api.embeddings, methods=["POST"]),
    Route("/api/pull", routes_pull.pull, methods=["POST"]),
    Route("/api/push", push_route.push, methods=["POST"]),
    Route("/openapi.json", openapi, methods=["GET"]),
    Route("/mfc/engines", api.engines, methods=["GET"]),
    # OpenAI's API (pure translation in mfc.server.openai; docs/api.md)
    Route("/v1/chat/completions", v1.chat_completions, methods=["POST"]),
    Route("/v1/completions", v1.completions, methods=["POST"]),
    Route("/v1/responses", v1.responses, methods=["POST"]),
    Route("/v1/embeddings", v1.embeddings, methods=["POST"]),
    Route("/v1/models", v1.models, methods=["GET"]),
    Route("/v1/models/{model:path}", v1.model, methods=["GET"]),
    # Anthropic's Messages API (pure translation in mfc.server.anthropic; docs/api.md)
    Route("/v1/messages", routes_anthropic.messages, methods=["POST"]),
    Route("/v1/messages/count_tokens", routes_anthropic.count_tokens, methods=["POST"]),
]


def make_state(config: ServerConfig, store: Store | None = None) -> ServerState:
    scheduler = Scheduler(
        max_loaded=config.max_loaded_models,
        num_parallel=config.num_parallel,
        max_queue=config.max_queue,
        default_keep_alive=config.keep_alive,
        load_timeout=config.load_timeout,
    )
    return ServerState(config, store or Store.from_env(), scheduler)


def create_app(config: ServerConfig, store: Store | None = None) -> Any:
    """The ASGI app: the Guard middleware around Starlette's router."""
    state = make_state(config, store if store is not None else _store(config))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await state.scheduler.close()  # stop every runner: no orphaned processes

    app = Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        exception_handlers={
            ApiError: _api_error,
            404: _not_found,
            405: _not_found,
            Exception: _unexpected,
        },
    )
    app.state.mfc = state
    return Guard(
        app,
        loopback_bind=config.address.is_loopback,
        origins=config.cors_origins,
        allowed_hosts=config.allowed_hosts,
    )


def _store(config: ServerConfig) -> Store:
    return Store(config.models) if config.models is not None else Store.from_env()
