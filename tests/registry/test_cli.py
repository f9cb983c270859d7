"""`mfc login`, `mfc logout` and `mfc push` as a user types them, against real registries."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from mfc.cli.main import cli
from mfc.store import Store
from mfc.testing.registry import Registry

from .conftest import BASIC_PASSWORD
from .helpers import counter_store, registry_manifest


@pytest.fixture
def env(tmp_path: Path, fixture_models: dict[str, Path]) -> dict[str, str]:
    store = counter_store(tmp_path, fixture_models)
    return {"MFC_MODELS": str(store.root), "DOCKER_CONFIG": str(tmp_path / "docker")}


def test_push_an_open_registry(env: dict[str, str], registry: Registry) -> None:
    runner = CliRunner()
    name = f"{registry.host}/cli/counter:v1"
    assert runner.invoke(cli, ["cp", "counter", name], env=env).exit_code == 0
    result = runner.invoke(cli, ["push", name], env=env)
    assert result.exit_code == 0, result.output
    digest = Store(env["MFC_MODELS"]).read_manifest(name).digest
    assert result.stdout.strip().endswith(f"pushed {name}@{digest}")
    r = registry_manifest(registry, "cli/counter", "v1")
    assert r.headers["Docker-Content-Digest"] == digest
    missing = runner.invoke(cli, ["push", f"{registry.host}/cli/nothing:v1"], env=env)
    assert missing.exit_code == 1 and "not found" in missing.stderr


def test_login_push_logout_with_basic_auth(env: dict[str, str], basic_registry: Registry) -> None:
    runner = CliRunner()
    host = basic_registry.host
    name = f"{host}/alice/counter:latest"
    runner.invoke(cli, ["cp", "counter", name], env=env)
    denied = runner.invoke(cli, ["push", name], env=env)
    assert denied.exit_code == 1
    assert f"run `mfc login {host}`" in denied.stderr
    wrong = runner.invoke(
        cli, ["login", host, "-u", "alice", "--password-stdin"], input="nope-123\n", env=env
    )
    assert wrong.exit_code == 1
    assert f"wrong credentials for {host}" in wrong.stderr
    assert "nope-123" not in wrong.output
    config = Path(env["DOCKER_CONFIG"]) / "config.json"
    assert not config.exists()  # nothing saved for a failed login
    ok = runner.invoke(cli, ["login", host, "-u", "alice"], input=BASIC_PASSWORD + "\n", env=env)
    assert ok.exit_code == 0, ok.output
    assert BASIC_PASSWORD not in ok.output
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert host in json.loads(config.read_text())["auths"]
    pushed = runner.invoke(cli, ["push", name], env=env)
    assert pushed.exit_code == 0, pushed.output
    assert BASIC_PASSWORD not in pushed.output
    out = runner.invoke(cli, ["logout", host], env=env)
    assert out.exit_code == 0 and "Removed" in out.stdout
    assert host not in json.loads(config.read_text())["auths"]
    assert runner.invoke(cli, ["push", name], env=env).exit_code == 1
