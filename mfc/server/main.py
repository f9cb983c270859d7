"""Running the server: logging, start-up warnings, uvicorn, a clean stop.

SIGINT/SIGTERM: uvicorn stops accepting connections and closes the open ones
(open streams end; their generations are cancelled in the runners), the
lifespan shutdown stops every runner process, and the process exits 0 — within
a few seconds, however many streams were open.
"""

from __future__ import annotations

import logging
import signal
import sys

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
    server = uvicorn.Server(
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
