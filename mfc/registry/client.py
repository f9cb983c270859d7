"""The HTTP side of the OCI distribution API: one ``httpx.Client`` per registry host.

Shared by pull and push. Plain http only for ``--insecure`` or a loopback host (as container
tools do); everything else is https. Authentication is an ``httpx.Auth`` (``mfc.registry.auth``)
so the 401 → credentials/token → retry dance lives in one place; redirects to another host
(S3-style blob storage) are followed without the registry's Authorization header.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx

from mfc.digest import of_bytes

LOOPBACK = ("localhost", "127.0.0.1", "[::1]", "::1")


class RegistryError(Exception):
    """A registry refused or failed a request; the message names the registry and what."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (``name[:port]``, ``[v6][:port]``) names this machine."""
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return name in LOOPBACK


def scheme_for(host: str, insecure: bool = False) -> str:
    """``http`` for --insecure and loopback hosts, else ``https``."""
    return "http" if insecure or is_loopback(host) else "https"


def auth_for(host: str, *, insecure: bool = False) -> httpx.Auth | None:
    """The ``httpx.Auth`` answering ``host``'s challenges (``mfc.registry.auth``)."""
    from mfc.registry.auth import auth_for as _auth_for  # auth imports RegistryError from here

    return _auth_for(host, insecure=insecure)


@dataclass
class RegistryClient:
    """Requests to one registry: ``base`` is ``scheme://host``; paths start with ``/v2/``."""

    host: str
    insecure: bool = False
    auth: httpx.Auth | None = None
    timeout: float = 30.0

    def __post_init__(self) -> None:
        self.base = f"{scheme_for(self.host, self.insecure)}://{self.host}"
        # httpx's default verification (certifi, or $SSL_CERT_FILE / $SSL_CERT_DIR), built once
        # and shared with mfc.registry.rawget's blob connections (loading the CA bundle costs
        # ~0.1 s of a pull's start-up).
        self.ssl_context = httpx.create_ssl_context()
        self.http = httpx.Client(
            base_url=self.base,
            auth=self.auth,
            verify=self.ssl_context,
            timeout=httpx.Timeout(self.timeout, connect=10.0),
            follow_redirects=False,  # redirects are followed by hand: no auth to other hosts
            headers={"User-Agent": "mfc"},
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- auth (replaced at merge by mfc.registry.auth: credentials from `mfc login`) -----------


# -- errors -------------------------------------------------------------------------------


class RegistryStatusError(RegistryError):
    """The registry answered an error status (``status``)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class RegistryNotFoundError(RegistryStatusError):
    """404: no such repository, tag, manifest or blob."""


class RegistryUnreachableError(RegistryError):
    """The registry's host could not be reached (DNS, refused, TLS, timeout)."""


_REDIRECTS = (301, 302, 303, 307, 308)
_MAX_REDIRECTS = 5
_MAX_ERROR_BODY = 64 << 10


def error_from(response: httpx.Response, host: str, what: str) -> RegistryStatusError:
    """A RegistryError naming the registry, the status and the registry's own error code and
    message (``{"errors": [{"code", "message"}]}``). Only the response's body is quoted —
    never a request header — so credentials cannot leak into the message."""
    detail = ""
    try:
        body = response.read()[:_MAX_ERROR_BODY] if not response.is_closed else response.content
        obj = json.loads(body) if body else None
        errors = obj.get("errors") if isinstance(obj, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code, message = errors[0].get("code"), errors[0].get("message")
            detail = ": " + " ".join(str(x) for x in (code, message) if x)
    except (ValueError, httpx.HTTPError):
        detail = ""
    status = response.status_code
    text = f"{what}: the registry {host} answered {status} {response.reason_phrase}{detail}"
    cls = RegistryNotFoundError if status == 404 else RegistryStatusError
    return cls(text, status)


def unreachable(host: str, exc: httpx.TransportError) -> RegistryUnreachableError:
    return RegistryUnreachableError(f"cannot reach the registry {host}: {exc}")


# -- the GET side (pull) --------------------------------------------------------------------

MAX_MANIFEST_BYTES = 4 << 20  # distribution's limit; the OCI spec asks clients for ≥ 4 MB


def open_get(
    client: RegistryClient,
    path_or_url: str,
    *,
    headers: dict[str, str] | None = None,
    timeout: httpx.Timeout | None = None,
) -> httpx.Response:
    """A streamed GET that follows redirects by hand: the registry's auth goes only to the
    registry's own host; a redirect to another host (S3-style blob storage, a pre-signed
    URL) is requested anonymously. The caller closes the response."""
    url = client.http.base_url.join(path_or_url)
    own = (client.http.base_url.host, client.http.base_url.port)
    for _ in range(_MAX_REDIRECTS + 1):
        request = client.http.build_request(
            "GET", url, headers=headers, timeout=timeout or httpx.USE_CLIENT_DEFAULT
        )
        if (url.host, url.port) == own:
            response = client.http.send(request, stream=True)
        else:
            request.headers.pop("Authorization", None)
            response = client.http.send(request, stream=True, auth=None)
        location = response.headers.get("Location")
        if response.status_code in _REDIRECTS and location:
            response.close()
            url = url.join(location)
            continue
        return response
    raise RegistryError(f"the registry {client.host}: more than {_MAX_REDIRECTS} redirects")


def get_manifest(
    client: RegistryClient, repository: str, reference: str, accept: str
) -> tuple[bytes, str]:
    """The manifest's exact bytes and media type (Content-Type without parameters, else the
    body's ``mediaType``). Bodies over MAX_MANIFEST_BYTES are refused unread."""
    what = f"manifest {repository}:{reference}"
    try:
        response = open_get(
            client, f"/v2/{repository}/manifests/{reference}", headers={"Accept": accept}
        )
    except httpx.TransportError as exc:
        raise unreachable(client.host, exc) from None
    try:
        if response.status_code != 200:
            raise error_from(response, client.host, what)
        length = response.headers.get("Content-Length")
        too_big = RegistryError(
            f"{what}: the registry {client.host} served a manifest over"
            f" {MAX_MANIFEST_BYTES >> 20} MiB; refused"
        )
        if length is not None and length.isdigit() and int(length) > MAX_MANIFEST_BYTES:
            raise too_big
        body = bytearray()
        for data in response.iter_bytes():
            body += data
            if len(body) > MAX_MANIFEST_BYTES:
                raise too_big
        media_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip()
    except httpx.TransportError as exc:
        raise unreachable(client.host, exc) from None
    finally:
        response.close()
    return bytes(body), media_type


def get_small_blob(client: RegistryClient, repository: str, digest: str, limit: int) -> bytes:
    """A blob read into memory (a config: never the store, so a pull refused after reading
    it has written nothing), verified against ``digest``; over ``limit`` bytes is refused."""
    what = f"blob {digest[:19]} of {repository}"
    try:
        response = open_get(client, f"/v2/{repository}/blobs/{digest}")
    except httpx.TransportError as exc:
        raise unreachable(client.host, exc) from None
    try:
        if response.status_code != 200:
            raise error_from(response, client.host, what)
        body = bytearray()
        for data in response.iter_bytes():
            body += data
            if len(body) > limit:
                raise RegistryError(f"{what}: over {limit} bytes; refused")
    except httpx.TransportError as exc:
        raise unreachable(client.host, exc) from None
    finally:
        response.close()
    if of_bytes(bytes(body)) != digest:
        raise RegistryError(
            f"{what}: the registry {client.host} served bytes that do not hash to it"
        )
    return bytes(body)
