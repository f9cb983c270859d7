"""Registry credentials (env, docker config, credential helpers) and a basic-auth registry."""

from __future__ import annotations

import base64
import functools
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mfc.registry.auth import (
    Credentials,
    UnauthorizedError,
    auth_for,
    check_login,
    credentials_for,
    parse_challenge,
    remove_credentials,
    save_credentials,
)
from mfc.registry.client import RegistryClient
from mfc.registry.push import push
from mfc.store import Store
from mfc.testing import registry as reg

from .conftest import BASIC_PASSWORD as SECRET
from .helpers import counter_store, registry_manifest


def test_parse_challenge() -> None:
    c = parse_challenge(
        'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"'
    )
    assert c is not None and c.scheme == "bearer"
    assert dict(c.params) == {
        "realm": "https://auth.example/token",
        "service": "reg",
        "scope": "repository:a/b:pull,push",
    }
    basic = parse_challenge('Basic realm="x"')
    assert basic is not None and basic.scheme == "basic"
    assert parse_challenge("Negotiate abc") is None


def test_env_credentials_win_and_can_be_limited_to_hosts(tmp_path: Path) -> None:
    env = {"DOCKER_CONFIG": str(tmp_path), "MFC_REGISTRY_USERNAME": "ci"}
    assert credentials_for("r.example", env=env) is None  # no password: not used
    env["MFC_REGISTRY_PASSWORD"] = SECRET
    creds = credentials_for("r.example", env=env)
    assert creds == Credentials("ci", SECRET, "$MFC_REGISTRY_USERNAME/$MFC_REGISTRY_PASSWORD")
    assert SECRET not in repr(creds)
    env["MFC_REGISTRY_HOSTS"] = "other.example, r.example"
    assert credentials_for("r.example", env=env) is not None
    assert credentials_for("third.example", env=env) is None


def test_login_file_keeps_other_keys_and_is_private(tmp_path: Path) -> None:
    env = {"DOCKER_CONFIG": str(tmp_path / "docker")}
    config = tmp_path / "docker" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"auths": {"https://keep.example": {"auth": "eDp5"}}, "x": 1}))
    where = save_credentials("r.example:5000", Credentials("me", SECRET), env=env)
    assert where == str(config)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    data = json.loads(config.read_text())
    assert data["x"] == 1 and "https://keep.example" in data["auths"]
    assert base64.b64decode(data["auths"]["r.example:5000"]["auth"]).decode() == f"me:{SECRET}"
    creds = credentials_for("r.example:5000", env=env)
    assert creds is not None and (creds.username, creds.secret) == ("me", SECRET)
    # docker's spellings of the same host (scheme, path) match too
    assert credentials_for("keep.example", env=env) == Credentials("x", "y", str(config))
    assert remove_credentials("r.example:5000", env=env)
    assert not remove_credentials("r.example:5000", env=env)
    assert "r.example:5000" not in json.loads(config.read_text())["auths"]
    assert json.loads(config.read_text())["x"] == 1


def test_home_docker_config_is_the_default(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    save_credentials("h.example", Credentials("u", SECRET), env=env)
    assert (tmp_path / ".docker" / "config.json").exists()
    assert credentials_for("h.example", env=env) is not None


@pytest.fixture
def helper_run(tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    """A real `docker-credential-fake` on a private PATH, keeping its store in a JSON file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    store = tmp_path / "helper-store.json"
    script = bin_dir / "docker-credential-fake"
    script.write_text(
        f"""#!/usr/bin/env python3
import json, sys
path = {str(store)!r}
try:
    data = json.load(open(path))
except FileNotFoundError:
    data = {{}}
action = sys.argv[1]
if action == "store":
    item = json.load(sys.stdin)
    data[item["ServerURL"]] = [item["Username"], item["Secret"]]
    json.dump(data, open(path, "w"))
elif action == "get":
    host = sys.stdin.read().strip()
    if host not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps({{"ServerURL": host, "Username": data[host][0], "Secret": data[host][1]}}))
elif action == "erase":
    data.pop(sys.stdin.read().strip(), None)
    json.dump(data, open(path, "w"))
"""
    )
    script.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    yield functools.partial(subprocess.run, env=env), store


def test_credential_helpers(tmp_path: Path, helper_run: tuple[Any, Path]) -> None:
    run, helper_store = helper_run
    env = {"DOCKER_CONFIG": str(tmp_path / "cfg")}
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text(
        json.dumps({"credHelpers": {"h.example": "fake"}})
    )
    assert credentials_for("h.example", env=env, run=run) is None
    where = save_credentials("h.example", Credentials("u", SECRET), env=env, run=run)
    assert where == "docker-credential-fake"
    assert SECRET not in (tmp_path / "cfg" / "config.json").read_text()
    creds = credentials_for("h.example", env=env, run=run)
    assert creds == Credentials("u", SECRET, "docker-credential-fake")
    assert remove_credentials("h.example", env=env, run=run)
    assert credentials_for("h.example", env=env, run=run) is None
    assert json.loads(helper_store.read_text()) == {}


# -- a registry with htpasswd (basic auth) ---------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, fixture_models: dict[str, Path]) -> Store:
    return counter_store(tmp_path_factory.mktemp("auth-store"), fixture_models)


def test_basic_auth_registry(basic_registry: reg.Registry, store: Store, tmp_path: Path) -> None:
    host = basic_registry.host
    env = {"DOCKER_CONFIG": str(tmp_path)}
    name = f"{host}/alice/counter:latest"
    store.copy("counter", name)

    def client() -> RegistryClient:
        return RegistryClient(host, auth=auth_for(host, env=env))

    with pytest.raises(UnauthorizedError, match=f"run `mfc login {host}`"), client() as c:
        push(store, name, client=c)
    with pytest.raises(UnauthorizedError, match=f"wrong credentials for {host}") as info:
        check_login(host, Credentials("alice", "wrong-pass"))
    assert "wrong-pass" not in str(info.value) and "wrong-pass" not in repr(info.value)
    check_login(host, Credentials("alice", SECRET))
    save_credentials(host, Credentials("alice", SECRET), env=env)
    with client() as c:
        result = push(store, name, client=c)
    assert result.digest == store.read_manifest(name).digest
    r = registry_manifest(basic_registry, "alice/counter", "latest", auth=("alice", SECRET))
    assert r.content == store.read_manifest(name).to_bytes()
    assert SECRET not in basic_registry.logs()
