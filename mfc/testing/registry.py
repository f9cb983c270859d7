"""A real OCI distribution registry for tests: Debian's ``docker-registry`` (CNCF distribution).

Started on 127.0.0.1 on a free port with a temporary storage root, as the registry tests'
fixtures do; stopped (and its log kept for the failure message) by ``stop``. Optional
``htpasswd`` (basic auth; the file must hold bcrypt hashes) and ``token`` (bearer tokens: a
realm, service, issuer and the PEM certificate bundle whose key signs the tokens) sections
are written into its config. ``available()`` says whether the binary is installed
(``tools/install_registry_tools.sh`` installs it with apt).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

BINARY = "docker-registry"
INSTALL_HINT = "run tools/install_registry_tools.sh (apt: docker-registry, skopeo)"


def available() -> bool:
    return shutil.which(BINARY) is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class TokenAuth:
    """The registry's ``auth.token`` section: tokens from ``realm`` signed by the key of the
    certificate in ``rootcertbundle``, for ``service``, issued by ``issuer``."""

    realm: str
    service: str
    issuer: str
    rootcertbundle: Path


@dataclass
class Registry:
    host: str  # "127.0.0.1:PORT", as names spell it
    root: Path  # storage root
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _config(
    root: Path, port: int, htpasswd: Path | None, token: TokenAuth | None
) -> dict[str, object]:
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": "mfc-tests"},
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "mfc-tests", "path": str(htpasswd)}}
    elif token is not None:
        config["auth"] = {
            "token": {
                "realm": token.realm,
                "service": token.service,
                "issuer": token.issuer,
                "rootcertbundle": str(token.rootcertbundle),
            }
        }
    return config


def _yaml(value: object, indent: int = 0) -> str:
    """The tiny YAML subset the config needs (nested maps of scalars), without a YAML library."""
    assert isinstance(value, Mapping)
    lines = []
    pad = "  " * indent
    for key, item in value.items():
        if isinstance(item, Mapping):
            lines.append(f"{pad}{key}:")
            lines.append(_yaml(item, indent + 1))
        elif isinstance(item, bool):
            lines.append(f"{pad}{key}: {'true' if item else 'false'}")
        elif isinstance(item, (int, float)):
            lines.append(f"{pad}{key}: {item}")
        else:
            text = str(item).replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{pad}{key}: "{text}"')
    return "\n".join(lines)


def start_registry(
    tmp: Path,
    *,
    htpasswd: Path | None = None,
    token: TokenAuth | None = None,
    env: Mapping[str, str] | None = None,
) -> Registry:
    """Start a registry with its storage under ``tmp``; wait until ``/v2/`` answers."""
    if not available():
        raise RuntimeError(f"{BINARY} is not installed: {INSTALL_HINT}")
    port = _free_port()
    root = tmp / f"registry-{port}"
    root.mkdir(parents=True)
    config = tmp / f"registry-{port}.yml"
    config.write_text(_yaml(_config(root / "data", port, htpasswd, token)) + "\n")
    log = tmp / f"registry-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [BINARY, "serve", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={"PATH": "/usr/bin:/bin", **(env or {})},
        )
    registry = Registry(f"127.0.0.1:{port}", root, log, proc)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{BINARY} exited {proc.returncode}:\n{registry.logs()}")
        try:
            status = httpx.get(registry.url + "/v2/", timeout=1).status_code
            if status in (200, 401):
                return registry
        except httpx.HTTPError:
            time.sleep(0.05)
    registry.stop()
    raise RuntimeError(f"{BINARY} did not start:\n{registry.logs()}")
