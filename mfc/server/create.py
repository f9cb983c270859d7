"""``POST /api/create`` and ``/api/blobs``: building models over HTTP with the same compiler.

Ollama's JSON form (``from``/``files``/``adapters``/``template``/…) is written
out as a Modelfile and built by the builder `mfc build` uses, so a request
means exactly what the equivalent Modelfile means and a broken one gets the
same located diagnostics (in the 400 body). mfc also accepts ``modelfile``:
the full Modelfile text (Ollama removed that field; users asked for it back).

Uploaded files (``files``/``adapters`` map a file name to a blob digest
uploaded before with ``POST /api/blobs/sha256:…``) are staged for the build as
symlinks to the store's blobs in a private temp directory; nothing is copied.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from mfc.diagnostics.diagnostic import DiagnosticError
from mfc.diagnostics.render import diagnostics_to_json
from mfc.digest import is_digest, normalize, of_hash
from mfc.modelfile.format import quote_value, render_instruction
from mfc.server.http import JSON, ApiError, ndjson
from mfc.store import DigestMismatchError, InvalidNameError, Store, StoreError, parse_name


def modelfile_from_json(req: Any, store: Store, stage: Path) -> str:
    """The Modelfile an Ollama JSON create request stands for; files staged under ``stage``."""
    lines: list[str] = []
    files = dict(req.files or {})
    if req.from_:
        lines.append(render_instruction("FROM", req.from_))
    elif files:
        lines.append(render_instruction("FROM", "./" + _stage_files(files, store, stage, "model")))
    else:
        raise ApiError(400, "neither 'from' or 'files' was specified")
    if req.from_ and files:
        raise ApiError(400, "give either 'from' or 'files', not both")
    for name in _stage_adapters(dict(req.adapters or {}), store, stage):
        lines.append(render_instruction("ADAPTER", "./" + name))
    if req.template:
        lines.append(render_instruction("TEMPLATE", req.template))
    if req.system:
        lines.append(render_instruction("SYSTEM", req.system))
    for key, value in (req.parameters or {}).items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            text = json.dumps(v) if isinstance(v, bool) else str(v)
            try:
                lines.append(render_instruction("PARAMETER", text, name=key))
            except ValueError as exc:
                raise ApiError(400, f"parameters.{key}: {exc}") from None
    for i, m in enumerate(req.messages or []):
        try:
            lines.append(render_instruction("MESSAGE", m.content or "", role=m.role))
        except ValueError as exc:
            raise ApiError(400, f"messages[{i}]: {exc}") from None
    licenses = (
        req.license if isinstance(req.license, list) else [req.license] if req.license else []
    )
    lines.extend(render_instruction("LICENSE", text) for text in licenses)
    for keyword, value in (
        ("REQUIRES", req.requires),
        ("RENDERER", req.renderer),
        ("PARSER", req.parser),
    ):
        if value:
            lines.append(f"{keyword} {quote_value(value)}")
    return "\n".join(lines) + "\n"


def _blob(store: Store, digest: str, field: str) -> Path:
    d = normalize(digest) if isinstance(digest, str) else None
    if d is None:
        raise ApiError(400, f"{field}: invalid digest format {digest!r}")
    path = store.blob_path(d)
    if not path.is_file():
        raise ApiError(
            400, f"{field}: blob {d} not found; upload it first with POST /api/blobs/{d}"
        )
    return path


def _safe_name(name: str, field: str) -> str:
    if not name or name.startswith("/") or ".." in Path(name).parts or "\\" in name:
        raise ApiError(400, f"{field}: file path must be relative")
    return name


def _stage_files(files: Mapping[str, str], store: Store, stage: Path, kind: str) -> str:
    """Link each uploaded file into ``stage``; returns the file FROM should name."""
    ggufs = []
    for name, digest in files.items():
        rel = _safe_name(name, f"files.{name}")
        target = stage / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(_blob(store, digest, f"files.{name}"), target)
        if rel.lower().endswith(".gguf"):
            ggufs.append(rel)
    if not ggufs:
        raise ApiError(
            400,
            "files: no .gguf file given (mfc builds GGUF models; safetensors are not supported)",
        )
    ggufs.sort()
    return ggufs[0]  # one file, or shard 1 of a split set (named …-00001-of-…)


def _stage_adapters(adapters: Mapping[str, str], store: Store, stage: Path) -> list[str]:
    names = []
    for name, digest in adapters.items():
        rel = _safe_name(name, f"adapters.{name}")
        target = stage / "adapters" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(_blob(store, digest, f"adapters.{name}"), target)
        names.append("adapters/" + rel)
    return names


async def create(request: Request, req: Any, store: Store) -> Response:
    if req.modelfile and (req.from_ or req.files or req.adapters):
        raise ApiError(400, "give either 'modelfile' or 'from'/'files'/'adapters', not both")
    try:
        tag = str(parse_name(req.model))
    except InvalidNameError as exc:
        raise ApiError(400, f"invalid model name {req.model!r}: {exc}") from None
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()

    def emit(item: dict[str, Any] | BaseException | None) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def work() -> None:
        from mfc.build import build_text

        try:
            with tempfile.TemporaryDirectory(prefix="mfc-create-") as tmp:
                stage = Path(tmp)
                if req.modelfile:
                    text, base_dir, source = req.modelfile, Path.cwd(), "<request modelfile>"
                else:
                    text, base_dir = modelfile_from_json(req, store, stage), stage
                    source = "<request>"
                started = False

                def progress(event: Any) -> None:
                    # "parsing modelfile" waits for the first step, so a Modelfile that does
                    # not compile is a 400 with diagnostics even when the client streams.
                    nonlocal started
                    if event.kind in ("step", "info"):
                        if not started:
                            started = True
                            emit({"status": "parsing modelfile"})
                        emit({"status": event.message})

                result = build_text(
                    text,
                    base_dir,
                    tag,
                    store=store,
                    source=source,
                    quantize=req.quantize or None,
                    progress=progress,
                )
                if not started:
                    emit({"status": "parsing modelfile"})
                for d in result.diagnostics:
                    emit({"status": f"warning[{d.code}]: {d.message}"})
                emit({"status": "writing manifest"})
                emit({"status": "success"})
        except BaseException as exc:
            emit(exc)
        finally:
            emit(None)

    asyncio.get_running_loop().run_in_executor(None, work)

    async def lines() -> AsyncIterator[dict[str, Any]]:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    it = lines()
    first: dict[str, Any] | None = None
    if req.stream is False:
        last: dict[str, Any] = {}
        try:
            async for item in it:
                last = item
        except BaseException as exc:
            raise _as_api_error(exc) from None
        return JSON(last)
    try:
        first = await it.__anext__()
    except StopAsyncIteration:
        first = None
    except BaseException as exc:
        raise _as_api_error(exc) from None

    async def stream() -> AsyncIterator[dict[str, Any]]:
        if first is not None:
            yield first
        try:
            async for item in it:
                yield item
        except BaseException as exc:
            api = _as_api_error(exc)
            yield api.body()

    return ndjson(stream(), lambda exc: str(exc))


def _as_api_error(exc: BaseException) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, DiagnosticError):
        errors = [d for d in exc.diagnostics if d.is_error] or list(exc.diagnostics)
        message = "; ".join(
            (f"{d.span.file}:{d.span.line}:{d.span.column}: " if d.span else "") + d.message
            for d in errors
        )
        return ApiError(400, message, diagnostics=diagnostics_to_json(exc.diagnostics))
    if isinstance(exc, (StoreError, OSError)):
        return ApiError(500, f"could not write the model: {exc}")
    return ApiError(500, f"internal error: {exc}")


# -- blobs ----------------------------------------------------------------------------------------


def _digest_param(request: Request) -> str:
    raw = request.path_params["digest"]
    d = normalize(raw)
    if d is None:
        raise ApiError(400, "invalid digest format")
    return d


async def head_blob(request: Request, store: Store) -> Response:
    d = _digest_param(request)
    if store.blob_path(d).is_file():
        return Response(status_code=200)
    raise ApiError(404, f'blob "{d}" not found')


async def post_blob(request: Request, store: Store) -> Response:
    """Stream the body into the store, hashing in the same pass; a mismatch keeps nothing."""
    d = _digest_param(request)
    if store.blob_path(d).is_file():
        return Response(status_code=200)
    loop = asyncio.get_running_loop()
    pipe_r, pipe_w = os.pipe()
    reader = os.fdopen(pipe_r, "rb", buffering=0)

    def put() -> Any:
        try:
            return store.put_stream(reader, expected=d)
        finally:
            reader.close()

    task = loop.run_in_executor(None, put)
    hasher = hashlib.sha256()
    try:
        with os.fdopen(pipe_w, "wb", buffering=0) as writer:
            async for chunk in request.stream():
                hasher.update(chunk)
                await loop.run_in_executor(None, writer.write, chunk)
    except (ClientDisconnect, BrokenPipeError) as exc:
        with contextlib.suppress(BaseException):
            await task
        raise ApiError(400, f"upload interrupted: {exc}") from None
    try:
        await task
    except DigestMismatchError:
        raise ApiError(400, f'digest mismatch, expected "{d}", got "{of_hash(hasher)}"') from None
    except StoreError as exc:
        raise ApiError(500, f"could not store the blob: {exc}") from None
    assert is_digest(d)
    return Response(status_code=201)
