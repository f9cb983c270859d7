"""The HTTP side of the OCI distribution API: one ``httpx.Client`` per registry host.

Shared by pull and push. Plain http only for ``--insecure`` or a loopback host (as container
tools do); everything else is https. Authentication is an ``httpx.Auth`` (``mfc.registry.auth``)
so the 401 → credentials/token → retry dance lives in one place; redirects to another host
(S3-style blob storage) are followed without the registry's Authorization header.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

LOOPBACK = ("localhost", "127.0.0.1", "[::1]", "::1")


class RegistryError(Exception):
    """A registry refused or failed a request; the message names the registry and what."""


def scheme_for(host: str, insecure: bool = False) -> str:
    """``http`` for --insecure and loopback hosts, else ``https``."""
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return "http" if insecure or name in LOOPBACK else "https"


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
        self.http = httpx.Client(
            base_url=self.base,
            auth=self.auth,
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
