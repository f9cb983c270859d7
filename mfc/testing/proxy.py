"""A small HTTP proxy for pull tests: counts and logs what crosses it, and injects faults.

Sits between mfc and a test registry (``upstream``). It records every request (method, path,
Range, start and end times, body bytes sent) so tests can count downloaded bytes and see
overlapping Range requests; and it can corrupt one byte of a blob, stall a response once,
slow every response (so a pull can be killed midway), drop blob responses midway (the
connection closes after some bytes, short of the Content-Length), or replace a manifest's body.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


@dataclass
class Hit:
    method: str
    path: str
    range: str | None
    start: float
    end: float = 0.0
    sent: int = 0


@dataclass
class Faults:
    corrupt_blob_offset: int | None = None  # flip the byte at this blob offset (every time)
    stall_once: float = 0.0  # sleep this long after the first 64 KiB of the first blob body
    delay_per_chunk: float = 0.0  # sleep after every 64 KiB (a slow link)
    drop_after: int = 0  # close a blob response's connection after this many body bytes ...
    drops: int = 0  # ... this many times (the first blob responses long enough)
    manifest_body: bytes | None = None  # served instead of any manifest
    manifest_type: str = "application/vnd.docker.distribution.manifest.v2+json"


@dataclass
class Proxy:
    upstream: str
    faults: Faults = field(default_factory=Faults)
    hits: list[Hit] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stalled: bool = False
    dropped: int = 0

    @property
    def host(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.server_address[1]}"

    def blob_bytes(self) -> int:
        return sum(h.sent for h in self.hits if "/blobs/" in h.path and h.method == "GET")

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def start_proxy(upstream: str, faults: Faults | None = None) -> Proxy:
    proxy = Proxy(upstream, faults or Faults())

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self._forward()

        def do_GET(self) -> None:
            self._forward()

        def _forward(self) -> None:
            f = proxy.faults
            hit = Hit(self.command, self.path, self.headers.get("Range"), time.monotonic())
            with proxy._lock:
                proxy.hits.append(hit)
            if "/manifests/" in self.path and f.manifest_body is not None:
                self.send_response(200)
                self.send_header("Content-Type", f.manifest_type)
                self.send_header("Content-Length", str(len(f.manifest_body)))
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(f.manifest_body)
                hit.end = time.monotonic()
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host",)}
            with httpx.stream(
                self.command, proxy.upstream + self.path, headers=headers, timeout=60
            ) as r:
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.end_headers()
                if self.command == "HEAD":
                    return
                offset = 0
                cr = r.headers.get("Content-Range", "")
                if cr.startswith("bytes "):
                    offset = int(cr[6:].split("-", 1)[0])
                blob = "/blobs/" in self.path
                try:
                    for chunk in r.iter_raw(64 << 10):
                        if blob and f.corrupt_blob_offset is not None:
                            i = f.corrupt_blob_offset - offset
                            if 0 <= i < len(chunk):
                                b = bytearray(chunk)
                                b[i] ^= 0xFF
                                chunk = bytes(b)
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        offset += len(chunk)
                        hit.sent += len(chunk)
                        stall = blob and f.stall_once and hit.sent >= 64 << 10
                        if stall and not proxy._stalled:  # (a config is shorter: not it)
                            proxy._stalled = True
                            time.sleep(f.stall_once)
                            self.close_connection = True
                            return
                        if blob and f.drop_after and hit.sent >= f.drop_after:
                            with proxy._lock:
                                drop = proxy.dropped < f.drops
                                proxy.dropped += drop
                            if drop:
                                self.close_connection = True
                                return
                        if blob and f.delay_per_chunk:
                            time.sleep(f.delay_per_chunk)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                finally:
                    hit.end = time.monotonic()

    proxy.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    proxy.server.daemon_threads = True
    threading.Thread(target=proxy.server.serve_forever, daemon=True).start()
    return proxy
