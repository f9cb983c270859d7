"""Registry credentials and the 401 → credentials/token → retry dance (docs/registry.md).

Where credentials come from, first match wins:

1. the environment, for CI: ``MFC_REGISTRY_USERNAME`` + ``MFC_REGISTRY_PASSWORD``, limited to
   the hosts listed in ``MFC_REGISTRY_HOSTS`` (comma separated) when that is set;
2. Docker's config file, ``$DOCKER_CONFIG/config.json`` else ``~/.docker/config.json`` — the
   file ``docker login`` writes, so both tools share logins: ``credHelpers[host]``, then
   ``credsStore`` (``docker-credential-<name> get``, the server name on stdin, a JSON
   ``{"Username", "Secret"}`` on stdout), then ``auths[host].auth`` (base64 ``user:password``).

``RegistryAuth`` is an ``httpx.Auth``: every request goes out anonymously (or with the token
last granted for its repository), and on a 401 it answers the challenge — ``Basic`` with the
credentials, ``Bearer realm,service,scope`` with a token from the realm (fetched with the
credentials if there are any, else anonymously), cached per scope until ``expires_in`` — and
retries once. A second 401 raises ``UnauthorizedError``. Secrets never appear in a message,
a log line or a ``repr``.

Ollama's own scheme (requests signed with ``~/.ollama/id_ed25519``) is not implemented.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mfc.registry.client import RegistryError
from mfc.store.fsutil import atomic_write_bytes

ENV_USERNAME = "MFC_REGISTRY_USERNAME"
ENV_PASSWORD = "MFC_REGISTRY_PASSWORD"
ENV_HOSTS = "MFC_REGISTRY_HOSTS"
DEFAULT_TOKEN_LIFETIME = 60  # seconds, when the token server does not say (the spec's default)
_HELPER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_REPO_RE = re.compile(r"^/v2/(.+?)/(?:blobs|manifests|tags)/")
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


class AuthError(RegistryError):
    """Credentials could not be read or stored (a bad config file, a failing helper)."""


class UnauthorizedError(AuthError):
    """The registry refused the request after the challenge was answered."""


@dataclass(frozen=True)
class Credentials:
    """A user name and its secret; ``source`` says where they came from (for messages)."""

    username: str
    secret: str = field(repr=False)
    source: str = ""


Run = Callable[..., "subprocess.CompletedProcess[str]"]


# -- where credentials live ----------------------------------------------------------------


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """Docker's config file: ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    env = os.environ if env is None else env
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]) / "config.json"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".docker" / "config.json"


def _key_host(key: str) -> str:
    """The host a config key names: docker writes ``host``, ``https://host`` or a URL."""
    key = re.sub(r"^[a-z]+://", "", key.strip())
    return key.split("/", 1)[0].lower()


_DOCKER_HUB = {"docker.io", "index.docker.io", "registry-1.docker.io"}


def _same_host(key: str, host: str) -> bool:
    a, b = _key_host(key), host.lower()
    return a == b or (a in _DOCKER_HUB and b in _DOCKER_HUB)


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes() or b"{}")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise AuthError(f"cannot read {path}: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise AuthError(f"cannot read {path}: not a JSON object")
    return data


def _lookup(table: Any, host: str) -> Any:
    if not isinstance(table, dict):
        return None
    for key, value in table.items():
        if _same_host(str(key), host):
            return value
    return None


def _helper(config: Mapping[str, Any], host: str) -> str | None:
    name = _lookup(config.get("credHelpers"), host) or config.get("credsStore")
    if not name:
        return None
    if not isinstance(name, str) or not _HELPER_RE.match(name):
        raise AuthError(f"invalid credential helper name {name!r} in the docker config")
    return name


def _run_helper(name: str, action: str, data: str, run: Run) -> subprocess.CompletedProcess[str]:
    program = f"docker-credential-{name}"
    try:
        return run(
            [program, action], input=data, capture_output=True, text=True, timeout=60, check=False
        )
    except FileNotFoundError:
        raise AuthError(f"credential helper `{program}` is not installed (not on PATH)") from None
    except subprocess.TimeoutExpired:
        raise AuthError(f"credential helper `{program} {action}` timed out") from None


def _from_helper(name: str, host: str, run: Run) -> Credentials | None:
    done = _run_helper(name, "get", host, run)
    if done.returncode != 0:
        if "credentials not found" in (done.stdout + done.stderr).lower():
            return None
        # The helper's output is not echoed: some helpers print what they were given.
        raise AuthError(f"credential helper `docker-credential-{name} get` failed for {host}")
    try:
        reply = json.loads(done.stdout)
        username, secret = str(reply["Username"]), str(reply["Secret"])
    except (ValueError, KeyError, TypeError):
        raise AuthError(f"`docker-credential-{name} get` gave no credentials") from None
    if username == "<token>":  # an OAuth identity token (Docker Hub's login flow): unsupported
        return None
    return Credentials(username, secret, f"docker-credential-{name}")


def credentials_for(
    host: str, *, env: Mapping[str, str] | None = None, run: Run = subprocess.run
) -> Credentials | None:
    """The credentials to answer ``host``'s challenges with, or None (anonymous)."""
    env = os.environ if env is None else env
    user, password = env.get(ENV_USERNAME), env.get(ENV_PASSWORD)
    if user and password is not None:
        hosts = [h.strip().lower() for h in env.get(ENV_HOSTS, "").split(",") if h.strip()]
        if not hosts or host.lower() in hosts:
            return Credentials(user, password, f"${ENV_USERNAME}/${ENV_PASSWORD}")
    path = config_path(env)
    config = _read_config(path)
    helper = _helper(config, host)
    if helper is not None:
        return _from_helper(helper, host, run)
    entry = _lookup(config.get("auths"), host)
    if not isinstance(entry, dict) or not entry.get("auth"):
        return None
    try:
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    except (ValueError, TypeError):
        why = f"the `auths` entry for {host} in {path} is not base64 user:password"
        raise AuthError(why) from None
    return Credentials(user, password, str(path))


def save_credentials(
    host: str,
    creds: Credentials,
    *,
    env: Mapping[str, str] | None = None,
    run: Run = subprocess.run,
) -> str:
    """Store credentials as ``docker login`` does; returns where (a path or a helper).

    With a credential helper configured for the host (or ``credsStore``) the secret goes to
    it; otherwise into ``auths[host].auth`` of the config file, written atomically with mode
    0600, every other key of the file kept as it was.
    """
    path = config_path(env)
    config = _read_config(path)
    helper = _helper(config, host)
    if helper is not None:
        payload = json.dumps(
            {"ServerURL": host, "Username": creds.username, "Secret": creds.secret}
        )
        if _run_helper(helper, "store", payload, run).returncode != 0:
            raise AuthError(f"credential helper `docker-credential-{helper} store` failed")
        return f"docker-credential-{helper}"
    auths = config.get("auths")
    if not isinstance(auths, dict):
        auths = config["auths"] = {}
    for key in [k for k in auths if _same_host(str(k), host)]:
        del auths[key]
    token = base64.b64encode(f"{creds.username}:{creds.secret}".encode()).decode()
    auths[host] = {"auth": token}
    _write_config(path, config)
    return str(path)


def remove_credentials(
    host: str, *, env: Mapping[str, str] | None = None, run: Run = subprocess.run
) -> bool:
    """Forget ``host``'s credentials (helper ``erase`` or the ``auths`` entry); False if none."""
    path = config_path(env)
    config = _read_config(path)
    helper = _helper(config, host)
    if helper is not None:
        return _run_helper(helper, "erase", host, run).returncode == 0
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return False
    keys = [k for k in auths if _same_host(str(k), host)]
    for key in keys:
        del auths[key]
    if keys:
        _write_config(path, config)
    return bool(keys)


def _write_config(path: Path, config: Mapping[str, Any]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = (json.dumps(config, indent="\t") + "\n").encode()
    atomic_write_bytes(path, data, mode=0o600)


# -- the challenge dance -------------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header: ``scheme`` is "basic" or "bearer"."""

    scheme: str
    params: Mapping[str, str]


def parse_challenge(header: str) -> Challenge | None:
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() not in ("basic", "bearer"):
        return None
    params = {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
        for m in _PARAM_RE.finditer(rest)
    }
    return Challenge(scheme.lower(), params)


def _basic(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.secret}".encode()).decode()


def _is_loopback(url: httpx.URL) -> bool:
    return url.host in _LOOPBACK


class RegistryAuth(httpx.Auth):
    """Answers one registry host's 401 challenges (see the module docstring)."""

    def __init__(
        self,
        host: str,
        credentials: Callable[[], Credentials | None],
        *,
        insecure: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.insecure = insecure
        self._credentials = credentials
        self._creds: Credentials | None = None
        self._looked_up = False
        self._clock = clock
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._by_repo: dict[str, tuple[str, float]] = {}  # last header that worked, per repo
        self._basic: str | None = None
        self.token_requests = 0  # for tests and curiosity: how often a realm was asked

    def __repr__(self) -> str:
        return f"RegistryAuth({self.host!r})"

    def credentials(self) -> Credentials | None:
        """Looked up once, on the first challenge (a helper may prompt or be slow)."""
        if not self._looked_up:
            self._creds = self._credentials()
            self._looked_up = True
        return self._creds

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        match = _REPO_RE.match(request.url.path)
        repo = match.group(1) if match else ""
        header = self._preemptive(repo)
        if header is not None:
            request.headers["Authorization"] = header
        response = yield request
        if response.status_code != 401:
            return
        challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if challenge is None:
            return  # the caller reports the bare 401
        creds = self.credentials()
        if challenge.scheme == "basic":
            if creds is None:
                raise self._refused(repo, creds)
            header = self._basic = _basic(creds)
        else:
            token, expiry = self._token(challenge, creds)
            header = f"Bearer {token}"
            if repo:
                self._by_repo[repo] = (header, expiry)
        request.headers["Authorization"] = header
        response = yield request
        if response.status_code == 401:
            self._by_repo.pop(repo, None)
            raise self._refused(repo, creds)

    def _preemptive(self, repo: str) -> str | None:
        if self._basic is not None:
            return self._basic
        entry = self._by_repo.get(repo)
        if entry is not None and entry[1] > self._clock():
            return entry[0]
        return None

    def _refused(self, repo: str, creds: Credentials | None) -> UnauthorizedError:
        what = f" to {repo}" if repo else ""
        if creds is None:
            return UnauthorizedError(
                f"unauthorized: {self.host} requires credentials{what}: run `mfc login {self.host}`"
                f" (or set ${ENV_USERNAME} and ${ENV_PASSWORD})"
            )
        return UnauthorizedError(
            f"unauthorized: wrong credentials for {self.host}, or no access{what}"
            f" (user {creds.username!r} from {creds.source}); run `mfc login {self.host}`"
        )

    def _token(self, challenge: Challenge, creds: Credentials | None) -> tuple[str, float]:
        realm = challenge.params.get("realm", "")
        service = challenge.params.get("service", "")
        scope = challenge.params.get("scope", "")
        key = (realm, service, _scope_key(scope))
        cached = self._tokens.get(key)
        if cached is not None and cached[1] > self._clock():
            return cached
        try:
            url = httpx.URL(realm)
        except httpx.InvalidURL:
            url = httpx.URL("")
        if url.scheme not in ("http", "https") or not url.host:
            raise AuthError(f"{self.host} sent an unusable token realm {realm!r}")
        headers = {"User-Agent": "mfc"}
        if creds is not None:
            if url.scheme == "http" and not (self.insecure or _is_loopback(url)):
                raise AuthError(
                    f"refusing to send credentials for {self.host} to {realm} over plain http"
                    " (use --insecure if you mean it)"
                )
            headers["Authorization"] = _basic(creds)
        params = {k: v for k, v in (("service", service), ("scope", scope)) if v}
        self.token_requests += 1
        try:
            reply = httpx.get(url, params=params, headers=headers, timeout=30.0)
        except httpx.HTTPError as exc:
            why = f"token server {url.host} for {self.host}: {type(exc).__name__}"
            raise AuthError(why) from None
        if reply.status_code in (401, 403):
            raise self._refused(scope.split(":")[1] if scope.count(":") >= 2 else "", creds)
        if reply.status_code != 200:
            raise AuthError(f"token server {url.host} for {self.host} answered {reply.status_code}")
        try:
            body = reply.json()
            token = body.get("token") or body.get("access_token")
            lifetime = int(body.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            token, lifetime = None, 0
        if not isinstance(token, str) or not token:
            raise AuthError(f"token server {url.host} for {self.host} sent no token")
        # Renew a little early so a token does not expire between send and check.
        entry = (token, self._clock() + max(lifetime - 5, 1))
        self._tokens[key] = entry
        return entry


def auth_for(
    host: str,
    *,
    insecure: bool = False,
    env: Mapping[str, str] | None = None,
    run: Run = subprocess.run,
) -> RegistryAuth:
    """The ``httpx.Auth`` for one registry host, with credentials looked up lazily."""
    return RegistryAuth(host, lambda: credentials_for(host, env=env, run=run), insecure=insecure)


def check_login(host: str, creds: Credentials, *, insecure: bool = False) -> None:
    """Prove ``creds`` against ``host``'s ``/v2/`` (as ``docker login`` does) before saving.

    Raises ``UnauthorizedError`` ("wrong credentials for HOST") or ``RegistryError``.
    """
    from mfc.registry.client import RegistryClient

    auth = RegistryAuth(host, lambda: creds, insecure=insecure)
    try:
        with RegistryClient(host, insecure, auth) as client:
            r = client.http.get("/v2/")
    except httpx.TransportError as exc:
        raise RegistryError(f"cannot reach {host}: {type(exc).__name__}: {exc}") from None
    if r.status_code == 401:  # no challenge we could answer
        raise UnauthorizedError(f"unauthorized: {host} refused the login")
    if r.status_code != 200:
        raise RegistryError(f"{host} is not a registry: GET /v2/ answered {r.status_code}")


def _scope_key(scope: str) -> str:
    """A scope with each resource's actions sorted: the distribution registry lists them in Go
    map order (``pull,push`` or ``push,pull``), which must not miss the token cache."""
    parts = []
    for item in scope.split():
        head, sep, actions = item.rpartition(":")
        parts.append(f"{head}{sep}{','.join(sorted(actions.split(',')))}" if sep else item)
    return " ".join(sorted(parts))
