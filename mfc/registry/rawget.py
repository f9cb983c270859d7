"""Blob bodies read straight into the caller's buffer: the GET a pull spends its time in.

httpx hands a body over in 64 KiB ``bytes`` that h11 has copied twice and that pass through
four layers of generators; for a multi-GiB blob on a fast link that Python work, not the
network, was the limit (profiled: a third of a pull's CPU in the interpreter, on a 2-core
machine that also runs the registry). Here ``http.client`` sends the request and parses the
status line and headers, and the body goes from the socket into the caller's buffer
(``readinto1``, one ``recv_into`` per call): no copy, no allocation, no generator.

It is a fast path only. ``open_raw`` answers None — use httpx — whenever it could differ
from httpx's behaviour: a proxy is configured, the registry answers anything but 200/206
(a 401 to renew a token, an error whose JSON the caller reports), or the body has no
``Content-Length`` (chunked). Requests carry what httpx would send: the client's default
headers and the ``Authorization`` its ``httpx.Auth`` adds up front (a token or basic
credentials already obtained for the repository, e.g. by the manifest GET). Redirects are
followed as ``client.open_get`` follows them: to another host without ``Authorization``.
TLS uses the client's context, the one its httpx client verifies with. One connection per
request: nothing is left half-read on a shared connection after a stall, an error or a
cancel. It costs a connect and the registry's time to first byte per 64 MiB part: about
10 ms from a loopback docker-registry, some 5 % of a part at 500 MB/s on one connection
(several connections overlap it).
"""

from __future__ import annotations

import http.client
import urllib.request
from email.message import Message

import httpx

from mfc.registry.client import RegistryClient

_REDIRECTS = (301, 302, 303, 307, 308)
_MAX_REDIRECTS = 5


class RawBody:
    """A 200/206 response whose body is read with ``readinto`` until ``remaining`` is 0."""

    def __init__(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse):
        self._conn, self._response = conn, response
        self.status = response.status
        self.headers: Message = response.headers
        length = response.length
        self.remaining = length if length is not None else 0

    def readinto(self, view: memoryview) -> int:
        """Up to ``len(view)`` body bytes (one socket read); 0 only at the end of the body or
        when the server closed the connection early (``remaining`` then says how short)."""
        if self.remaining <= 0 or not len(view):
            return 0
        fp = self._response.fp
        if fp is None:
            return 0
        n = fp.readinto1(view[: self.remaining]) or 0
        self.remaining -= n
        return n

    def close(self) -> None:
        self._response.close()
        self._conn.close()


def _proxied(url: httpx.URL) -> bool:
    """Whether httpx would send this request through a proxy (``*_PROXY`` variables)."""
    proxies = urllib.request.getproxies()
    if not (proxies.get(url.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(url.host)


def open_raw(
    client: RegistryClient, path: str, headers: dict[str, str], timeout: float
) -> RawBody | None:
    """GET ``path`` on ``client``'s registry; the response if it is a 200 or 206 with a
    ``Content-Length``, else None (the caller asks again through httpx, which handles the
    rest). ``timeout`` bounds the connect and every read (a stall). Network errors raise
    ``OSError`` or ``http.client.HTTPException``."""
    url = client.http.base_url.join(path)
    if url.scheme not in ("http", "https") or _proxied(url):
        return None
    request = client.http.build_request("GET", url, headers=headers)
    if client.auth is not None:
        flow = client.auth.auth_flow(request)
        try:
            request = next(flow)  # the credentials it already has; a 401 falls back
        finally:
            flow.close()
    # http.client adds ``Accept-Encoding: identity``: a blob's bytes are hashed as sent.
    skip = ("accept-encoding", "host", "connection")
    sent = {k: v for k, v in request.headers.items() if k.lower() not in skip}
    own = (url.host, url.port)
    for _ in range(_MAX_REDIRECTS + 1):
        if (url.host, url.port) != own or url.scheme != client.http.base_url.scheme:
            sent = {k: v for k, v in sent.items() if k.lower() != "authorization"}
        sent["Host"] = url.netloc.decode("ascii")
        sent["Connection"] = "close"
        if url.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                url.host, url.port, timeout=timeout, context=client.ssl_context
            )
        else:
            conn = http.client.HTTPConnection(url.host, url.port, timeout=timeout)
        try:
            target = url.raw_path.decode("ascii")
            conn.putrequest("GET", target, skip_host=True)
            for k, v in sent.items():
                conn.putheader(k, v)
            conn.endheaders()
            response = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        location = response.headers.get("Location")
        if response.status in _REDIRECTS and location:
            response.close()
            conn.close()
            url = url.join(location)
            if url.scheme not in ("http", "https") or _proxied(url):
                return None
            continue
        chunked = "chunked" in response.headers.get("Transfer-Encoding", "").lower()
        encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
        framed = response.length is not None and not (chunked or encoded)
        if response.status in (200, 206) and framed:
            return RawBody(conn, response)
        response.close()
        conn.close()
        return None
    return None
