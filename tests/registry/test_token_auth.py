"""Docker token auth against a real registry whose `auth.token` verifies the tests' JWTs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mfc.registry.auth import Credentials, UnauthorizedError, auth_for, save_credentials
from mfc.registry.client import RegistryClient
from mfc.registry.push import push
from mfc.store import Store
from mfc.testing import registry as reg

from .helpers import blob_ok, counter_store, registry_manifest
from .token_server import ISSUER, SERVICE, TokenServer, start_token_server

SECRET = "t0ken-Pa55"


@pytest.fixture(scope="module")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[reg.Registry, TokenServer]]:
    if not reg.available():
        pytest.skip(f"{reg.BINARY} is not installed: {reg.INSTALL_HINT}")
    tmp = tmp_path_factory.mktemp("token-registry")
    server = start_token_server(tmp, "bob", SECRET)
    token = reg.TokenAuth(server.url, SERVICE, ISSUER, server.cert_pem)
    r = reg.start_registry(tmp, token=token)
    try:
        yield r, server
    finally:
        r.stop()
        server.stop()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, fixture_models: dict[str, Path]) -> Store:
    return counter_store(tmp_path_factory.mktemp("token-store"), fixture_models)


def test_push_and_pull_with_tokens(
    token_registry: tuple[reg.Registry, TokenServer], store: Store, tmp_path: Path
) -> None:
    registry, server = token_registry
    host = registry.host
    name = f"{host}/bob/counter:latest"
    store.copy("counter", name)
    env = {"DOCKER_CONFIG": str(tmp_path)}
    # Anonymous: the token server grants pull only, so the upload is refused.
    anonymous = RegistryClient(host, auth=auth_for(host, env=env))
    with pytest.raises(UnauthorizedError, match=f"run `mfc login {host}`"), anonymous as c:
        push(store, name, client=c)
    save_credentials(host, Credentials("bob", SECRET), env=env)
    server.requests.clear()
    auth = auth_for(host, env=env)
    with RegistryClient(host, auth=auth) as c:
        result = push(store, name, client=c, chunk_size=100_000)
    manifest = store.read_manifest(name)
    assert result.digest == manifest.digest
    # Tokens are cached per scope: one for pull (the first HEAD), one for pull,push (the first
    # POST) — not one per request.
    # (the registry lists a scope's actions in Go map order: "pull,push" or "push,pull")
    scopes = [_actions(q.get("scope")) for q in server.requests]
    assert scopes == [("bob/counter", {"pull"}), ("bob/counter", {"pull", "push"})]
    assert auth.token_requests == 2
    assert all(q.get("service") == SERVICE for q in server.requests)
    # An anonymous reader gets a pull token through the same flow.
    reader = auth_for(host, env={"DOCKER_CONFIG": str(tmp_path / "nobody")})
    with httpx.Client(auth=reader) as anon:
        r = registry_manifest(registry, "bob/counter", "latest")
        assert r.status_code == 401  # without the auth flow
        got = anon.get(
            f"{registry.url}/v2/bob/counter/manifests/latest",
            headers={"Accept": manifest.media_type},
        )
        assert got.status_code == 200 and got.content == manifest.to_bytes()
        for desc in manifest.descriptors():
            assert blob_ok(registry, "bob/counter", desc.digest, auth=reader)
    assert reader.token_requests == 1


def test_wrong_password_at_the_token_server(
    token_registry: tuple[reg.Registry, TokenServer], store: Store, tmp_path: Path
) -> None:
    registry, _ = token_registry
    env = {"DOCKER_CONFIG": str(tmp_path)}
    save_credentials(registry.host, Credentials("bob", "not-it"), env=env)
    name = f"{registry.host}/bob/wrong:latest"
    store.copy("counter", name)
    client = RegistryClient(registry.host, auth=auth_for(registry.host, env=env))
    with pytest.raises(UnauthorizedError, match="wrong credentials") as info, client as c:
        push(store, name, client=c)
    assert "not-it" not in str(info.value)


def _actions(scope: str | None) -> tuple[str, set[str]]:
    """``repository:NAME:a,b`` as (NAME, {a, b})."""
    assert scope is not None and scope.startswith("repository:")
    name, _, actions = scope.removeprefix("repository:").rpartition(":")
    return name, set(actions.split(","))
