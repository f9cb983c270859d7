"""Running the server: logging, start-up warnings, uvicorn, a clean stop.

SIGINT/SIGTERM: every open generation ends at once (a stream gets a final
``{"error": "the server is shutting down"}`` line; its runner cancels it), new
requests get 503, uvicorn stops accepting connections and closes the open ones,
the lifespan shutdown stops every runner process, and the process exits 0 —
within a few seconds, however many streams were open.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from types import FrameType
from typing import Any

from mfc.server.config import Loaded


def run(loaded: Loaded) -> int:
    import uvicorn

    from mfc.server.app import create_app

    config = loaded.config
    level = logging.DEBUG if config.debug else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("mfc.server")
    for warning in loaded.warnings:
        log.warning("%s", warning)
    if not config.address.is_loopback:
        log.warning(
            "listening on %s: every machine that can reach it can use and change your models",
            config.address.url,
        )
    app = create_app(config)
    scheduler = app.app.state.mfc.scheduler

    class Server(uvicorn.Server):
        """On the first SIGINT/SIGTERM, open generations end at once with an error line, so
        the graceful shutdown does not wait out its timeout for streams that never end."""

        async def startup(self, sockets: Any = None) -> None:
            self.loop = asyncio.get_running_loop()
            await super().startup(sockets)

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if not self.should_exit and hasattr(self, "loop"):
                self.loop.call_soon_threadsafe(scheduler.begin_shutdown)
            super().handle_exit(sig, frame)

    server = Server(
        uvicorn.Config(
            app,
            host=config.address.host,
            port=config.address.port,
            log_level="debug" if config.debug else "warning",
            access_log=bool(config.debug),
            timeout_graceful_shutdown=3,
            lifespan="on",
        )
    )
    log.info("mfc serve listening on %s", config.address.url)
    # uvicorn handles SIGINT/SIGTERM while it runs (stop accepting, close connections, run the
    # lifespan shutdown that stops every runner) and then re-raises the signal to the handler
    # that was installed before it. A stop that was asked for is a clean exit: status 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    try:
        server.run()
    except OSError as exc:
        print(
            f"error: cannot listen on {config.address.url}: {exc.strerror or exc}", file=sys.stderr
        )
        return 1
    if not server.started:
        return 1
    return 0
