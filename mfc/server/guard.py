"""Who may talk to the server: the DNS-rebinding Host check and CORS.

A web page on another site can make the user's browser send requests to
``http://127.0.0.1:11434`` — by DNS rebinding (its own name resolving to
127.0.0.1) or by plain cross-origin fetches. Two checks stop it, as in
Ollama's ``allowedHostsMiddleware`` and CORS config:

- while the server listens on a loopback address, a request's ``Host`` must be a
  loopback literal, ``localhost`` / ``*.localhost``, or a name the user allowed
  (``MFC_ALLOWED_HOSTS``); anything else — an empty host included, which
  Ollama lets through — is 403;
- CORS answers only the allowed origins (Ollama's defaults plus ``ORIGINS``).

Pure ASGI middleware: it runs before routing and never reads the body.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ALLOW_HEADERS = "Authorization, Content-Type, User-Agent, Accept, X-Requested-With, " + (
    "X-Stainless-Lang, X-Stainless-Package-Version, X-Stainless-Os, X-Stainless-Arch, "
    "X-Stainless-Retry-Count, X-Stainless-Runtime, X-Stainless-Runtime-Version, "
    "X-Stainless-Async, X-Stainless-Helper-Method, X-Stainless-Poll-Helper, "
    "X-Stainless-Custom-Poll-Interval, X-Stainless-Timeout, X-Stainless-Read-Timeout, "
    "anthropic-version, anthropic-beta, x-api-key"
)
ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"


def split_host_header(value: str) -> str:
    """The host part of a ``Host`` header (``[::1]:11434`` → ``::1``; ``:11434`` → ``""``)."""
    v = value.strip()
    if v.startswith("["):
        end = v.find("]")
        return v[1:end] if end > 0 else v
    if v.count(":") == 1:
        return v.partition(":")[0]
    return v  # no port, or a bare IPv6 literal


def host_allowed(host_header: str | None, allowed: Iterable[str] = ()) -> bool:
    """True when a request to a loopback-bound server names a local host."""
    if host_header is None:
        return False
    host = split_host_header(host_header).lower().rstrip(".")
    if not host:
        return False  # `Host: :11434` (Ollama lets it through: its PR #17721)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    return any(host == a.lower().rstrip(".") for a in allowed)


def origin_allowed(origin: str, patterns: Iterable[str]) -> bool:
    """gin-contrib/cors matching: exact, ``*`` alone, or ``*`` wildcards inside a pattern."""
    for pattern in patterns:
        if pattern == "*" or pattern == origin:
            return True
        if "*" in pattern and fnmatch.fnmatchcase(origin, pattern):
            return True
    return False


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class Guard:
    """ASGI middleware: 403 for a foreign Host on a loopback bind; CORS for allowed origins."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        loopback_bind: bool,
        origins: Iterable[str],
        allowed_hosts: Iterable[str] = (),
    ):
        self.app = app
        self.loopback_bind = loopback_bind
        self.origins = tuple(origins)
        self.allowed_hosts = tuple(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.loopback_bind and not host_allowed(_header(scope, b"host"), self.allowed_hosts):
            await _plain(send, 403, b"")
            return
        origin = _header(scope, b"origin")
        cors_ok = origin is not None and origin_allowed(origin, self.origins)
        if scope["method"] == "OPTIONS" and origin is not None:
            if not cors_ok:
                await _plain(send, 403, b"")
                return
            headers = [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-methods", ALLOW_METHODS.encode()),
                (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
                (b"access-control-max-age", b"43200"),
                (b"vary", b"Origin"),
            ]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        if origin is not None and not cors_ok:
            await _plain(send, 403, b"")
            return
        if origin is None or not cors_ok:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers.append((b"access-control-allow-origin", origin.encode("latin-1")))
                headers.append((b"vary", b"Origin"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_cors)


async def _plain(send: Send, status: int, body: bytes) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(body)),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
