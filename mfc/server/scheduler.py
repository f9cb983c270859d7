"""Which models are loaded, in which runner, for how long.

Ollama's scheduler, for one machine without GPUs:

- a model is loaded on first use; concurrent first requests share one load;
- each loaded model is one runner process with ``num_parallel`` sequences; the
  runner's engine batches them, so the scheduler never serialises requests for
  a model — it only bounds them: past ``num_parallel + max_queue`` open
  requests for a model, a request is refused at once (503);
- after its last request a model stays for its keep_alive (the request's, else
  ``KEEP_ALIVE``); 0 unloads at once; forever never;
- at ``max_loaded_models``, loading another evicts the least recently used idle
  model; if all are busy the load waits until one is idle;
- a request whose load-time options (num_ctx, num_batch, …) differ from the
  loaded ones reloads the model once it is idle;
- a runner that dies is dropped; the next request starts a fresh one.

Everything here runs on the server's event loop; nothing blocks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from mfc.server.runners import RunnerError, RunnerProcess

log = logging.getLogger("mfc.server")


class QueueFull(RuntimeError):
    """More open requests for a model than its slots plus MAX_QUEUE."""


@dataclass(frozen=True)
class LoadSpec:
    """Everything that identifies one loaded engine: a different spec means a reload."""

    digest: str  # manifest digest (or the file path for a bare GGUF)
    model_path: str
    adapters: tuple[tuple[str, float], ...]
    load: tuple[tuple[str, Any], ...]  # LoadOptions as sorted pairs
    n_seq_max: int
    projector: str | None = None  # a vision projector loaded with the model

    def wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "model_path": self.model_path,
            "adapters": [list(a) for a in self.adapters],
            "load": dict(self.load),
            "n_seq_max": self.n_seq_max,
        }
        if self.projector is not None:
            wire["projector"] = self.projector
        return wire


@dataclass
class Loaded:
    """One model in memory (or being loaded)."""

    name: str  # as first requested (for /api/ps and errors)
    spec: LoadSpec
    runner: RunnerProcess
    info: dict[str, Any] = field(default_factory=dict)  # size, details, … for /api/ps
    active: int = 0
    last_used: float = field(default_factory=time.monotonic)
    keep_alive: float = 300.0
    expires_at: float = math.inf  # wall-clock seconds; inf while busy or forever
    ready: asyncio.Future[None] | None = None  # resolves when loaded (or with the load error)
    load_ns: int = 0
    load_reported: bool = False  # the first request after a load reports load_duration
    unload_when_idle: bool = False  # asked to unload while busy; a new request cancels it
    _timer: asyncio.TimerHandle | None = None
    load_task: asyncio.Task[None] | None = None
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def context_length(self) -> int:
        return int(dict(self.spec.load).get("n_ctx", 0))


class Scheduler:
    def __init__(
        self,
        *,
        max_loaded: int,
        num_parallel: int,
        max_queue: int,
        default_keep_alive: float,
        load_timeout: float,
        runner_factory: Callable[[str], RunnerProcess] = RunnerProcess,
    ):
        self.max_loaded = max(1, max_loaded)
        self.num_parallel = max(1, num_parallel)
        self.max_queue = max_queue
        self.default_keep_alive = default_keep_alive
        self.load_timeout = load_timeout
        self._runner_factory = runner_factory
        self.models: dict[str, Loaded] = {}  # by digest
        self._changed = asyncio.Condition()
        self._closing = False

    # -- public ---------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def use(
        self,
        name: str,
        spec: LoadSpec,
        keep_alive: float | None,
        info: dict[str, Any] | None = None,
    ) -> AsyncIterator[Loaded]:
        """Hold a loaded model for one request; released (and maybe unloaded) on exit."""
        model = await self._acquire(name, spec, info or {})
        try:
            yield model
        finally:
            await self._release(
                model, self.default_keep_alive if keep_alive is None else keep_alive
            )

    async def unload(self, digest: str) -> bool:
        """Unload (``keep_alive: 0`` with no prompt, `mfc stop`, delete): now if the model is
        idle, else when its open requests are done — without waiting for them, as Ollama's
        ``expireRunner`` (a stream with ``num_predict: -1`` may never end)."""
        model = self.models.get(digest)
        if model is None:
            return False
        if model.ready is not None:
            with contextlib.suppress(Exception):
                await model.ready
        if model.active:
            model.unload_when_idle = True
            self._cancel_timer(model)
            return True
        if self.models.get(digest) is model:
            await self._drop(model)
        return True

    def ps(self) -> list[Loaded]:
        ready = [m for m in self.models.values() if m.ready is not None and m.ready.done()]
        ready = [m for m in ready if m.ready.exception() is None]  # type: ignore[union-attr]
        return sorted(ready, key=lambda m: -m.expires_at if m.expires_at != math.inf else -1e300)

    def begin_shutdown(self) -> None:
        """SIGINT/SIGTERM: refuse new requests (503) and end every open generation now, so each
        stream gets a final ``{"error"}`` line and uvicorn's graceful shutdown has no open
        response to wait for. ``close`` then stops the runners."""
        self._closing = True
        for model in list(self.models.values()):
            model.runner.abort_requests("the server is shutting down", "shutdown")

    async def close(self) -> None:
        self._closing = True
        await asyncio.gather(
            *(self._drop(m) for m in list(self.models.values())), return_exceptions=True
        )

    # -- internals ------------------------------------------------------------

    async def _acquire(self, name: str, spec: LoadSpec, info: dict[str, Any]) -> Loaded:
        while True:
            if self._closing:
                raise RunnerError("the server is shutting down", "shutdown")
            model = self.models.get(spec.digest)
            if model is not None and model.runner.dead is not None:
                await self._drop(model)
                continue
            if model is not None and model.spec != spec:
                # Load-time options changed: reload once the current requests are done.
                if model.active:
                    model.idle.clear()
                    await model.idle.wait()
                    continue
                await self._drop(model)
                continue
            if model is None:
                model = await self._start_load(name, spec, info)
            if model.active >= self.num_parallel + self.max_queue:
                raise QueueFull("server busy, please try again.  maximum pending requests exceeded")
            model.active += 1
            model.unload_when_idle = False  # this request's keep_alive decides now
            model.idle.clear()
            self._cancel_timer(model)
            model.expires_at = math.inf
            model.last_used = time.monotonic()
            try:
                assert model.ready is not None
                await asyncio.shield(model.ready)
            except BaseException:
                model.active -= 1
                if not model.active:
                    model.idle.set()
                raise
            if model.runner.dead is not None:  # died between load and now
                model.active -= 1
                await self._drop(model)
                continue
            if self._closing:  # the server began to stop while this request waited for the load
                await self._release(model, 0)
                raise RunnerError("the server is shutting down", "shutdown")
            return model

    async def _start_load(self, name: str, spec: LoadSpec, info: dict[str, Any]) -> Loaded:
        # Make room first (LRU among idle models); wait while every loaded model is busy.
        while len(self.models) >= self.max_loaded:
            idle = [m for m in self.models.values() if not m.active and m.ready and m.ready.done()]
            if idle:
                await self._drop(min(idle, key=lambda m: m.last_used))
                continue
            async with self._changed:
                await self._changed.wait()
            if spec.digest in self.models:
                return self.models[spec.digest]
        runner = self._runner_factory(name)
        model = Loaded(name, spec, runner, info=info)
        model.ready = asyncio.get_running_loop().create_future()
        self.models[spec.digest] = model
        model.load_task = asyncio.create_task(self._load(model))
        return model

    async def _load(self, model: Loaded) -> None:
        assert model.ready is not None
        try:
            await model.runner.start()
            model.load_ns = await model.runner.load(model.spec.wire(), self.load_timeout)
        except BaseException as exc:
            if self.models.get(model.spec.digest) is model:
                del self.models[model.spec.digest]
            with contextlib.suppress(Exception):
                await model.runner.stop(grace=1)
            if not isinstance(exc, RunnerError):
                exc = RunnerError(f"could not start a runner for {model.name}: {exc}", "load")
            model.ready.set_exception(exc)
            model.ready.exception()  # retrieved: no "never retrieved" warning if nobody waits
            await self._notify()
            return
        model.ready.set_result(None)

    async def _release(self, model: Loaded, keep_alive: float) -> None:
        model.active -= 1
        model.last_used = time.monotonic()
        model.keep_alive = keep_alive
        if model.active:
            return
        model.idle.set()
        if self.models.get(model.spec.digest) is not model:
            return
        if model.runner.dead is not None or keep_alive <= 0 or model.unload_when_idle:
            await self._drop(model)
            return
        if keep_alive == math.inf:
            model.expires_at = math.inf
        else:
            model.expires_at = time.time() + keep_alive
            loop = asyncio.get_running_loop()
            model._timer = loop.call_later(
                keep_alive, lambda: asyncio.ensure_future(self._expire(model))
            )
        await self._notify()

    async def _expire(self, model: Loaded) -> None:
        if not model.active and self.models.get(model.spec.digest) is model:
            await self._drop(model)

    def _cancel_timer(self, model: Loaded) -> None:
        if model._timer is not None:
            model._timer.cancel()
            model._timer = None

    async def _drop(self, model: Loaded) -> None:
        self._cancel_timer(model)
        if self.models.get(model.spec.digest) is model:
            del self.models[model.spec.digest]
        await model.runner.stop()
        await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


def spec_with(spec: LoadSpec, **changes: Any) -> LoadSpec:
    return dataclasses.replace(spec, **changes)
