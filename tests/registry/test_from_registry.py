"""Issue 11's "where it shows up": FROM a registry model (pulled during the build, locked by
digest), `mfc pull --to DIR` for offline builds, and build → push → rm → pull → run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mfc.build import BuildEvent, build_modelfile
from mfc.cli.main import cli
from mfc.diagnostics.diagnostic import DiagnosticError
from mfc.registry.pull import pull
from mfc.registry.push import push
from mfc.store import Store
from mfc.store import media_types as mt
from mfc.testing import registry as reg
from mfc.testing import registry_seed
from mfc.testing.server import build_counter


def _codes(exc: DiagnosticError) -> list[str]:
    return [d.code for d in exc.diagnostics]


def _modelfile(tmp: Path, text: str) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "Modelfile"
    path.write_text(text)
    return path


def _build(path: Path, store: Store, **kw: object) -> object:
    # registry_cache pointed at a directory that does not exist: no vendored cache is found
    # above the temp directory or the working directory, whatever the checkout holds
    kw.setdefault("registry_cache", path.parent / "no-cache")
    return build_modelfile(path, "app", store=store, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, fixture_models: dict[str, Path]) -> Store:
    """`counter` and `other` (the counter with another SYSTEM: another digest)."""
    store = Store(tmp_path_factory.mktemp("src") / "models")
    build_counter(store, fixture_models, "counter:latest")
    build_counter(store, fixture_models, "other:latest", "SYSTEM another model\n")
    return store


def _mfc(*args: str, models: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "MFC_"))}
    return subprocess.run(
        [sys.executable, "-m", "mfc", *args],
        capture_output=True,
        text=True,
        env={**env, "MFC_MODELS": str(models)},
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def test_build_push_rm_pull_run_same_digest_and_output(
    registry: reg.Registry, fixture_models: dict[str, Path], tmp_path: Path
) -> None:
    store = Store(tmp_path / "models")
    name = f"{registry.host}/library/roundtrip:v1"
    build_counter(store, fixture_models, name, "PARAMETER temperature 0\n")
    built = store.read_manifest(name).digest
    before = _mfc("run", name, "abc", models=store.root)
    assert before.returncode == 0, before.stderr
    assert push(store, name).digest == built
    store.remove(name)
    assert name not in {str(e.name.display) for e in store.list_models()}
    assert pull(store, name).digest == built
    after = _mfc("run", name, "abc", models=store.root)
    assert after.returncode == 0, after.stderr
    assert after.stdout == before.stdout == "defghijklmnopqrstuvwxyz\n"
    assert store.read_manifest(name).digest == built


def test_from_registry_pulls_locks_and_locked_catches_a_moved_tag(
    registry: reg.Registry, source: Store, tmp_path: Path
) -> None:
    v1 = registry_seed.seed(registry.url, source, "counter:latest", "library/base", "v1")
    ref = f"{registry.host}/library/base:v1"
    path = _modelfile(tmp_path / "app", f"FROM {ref}\nSYSTEM built on a pulled base\n")

    events: list[BuildEvent] = []
    store = Store(tmp_path / "fresh")
    result = _build(path, store, progress=events.append)
    assert store.read_manifest(ref).digest == v1  # pulled, under its full name
    lock = json.loads((tmp_path / "app" / "Modelfile.lock").read_text())
    assert lock["inputs"][0] == {
        "instruction": "FROM",
        "ref": ref,
        "kind": "model",
        "digest": v1,
        "name": ref,
    }
    assert lock["manifest"] == result.manifest_digest  # type: ignore[attr-defined]
    steps = [e.message for e in events if e.kind == "step"]
    assert any(s.startswith("pulling ") and "from the registry" in s for s in steps), steps
    assert any(e.kind == "bytes" and e.message.startswith("pulling ") for e in events)

    # --locked from another fresh store: pulls the locked digest, same image
    again = _build(path, Store(tmp_path / "fresh2"), locked=True)
    assert again.manifest_digest == result.manifest_digest  # type: ignore[attr-defined]

    # the tag moves on the registry: --locked refuses, naming both digests, pulling nothing
    v2 = registry_seed.seed(registry.url, source, "other:latest", "library/base", "v1")
    assert v2 != v1
    fresh3 = Store(tmp_path / "fresh3")
    with pytest.raises(DiagnosticError) as caught:
        _build(path, fresh3, locked=True)
    assert _codes(caught.value) == ["MF210"]
    diag = caught.value.diagnostics[0]
    assert v1 in diag.message and v2 in diag.message, diag.message
    assert diag.span is not None and diag.span.start == 0
    assert list(fresh3.list_models()) == []
    assert not any(fresh3.blobs_dir.glob("sha256-*")) if fresh3.blobs_dir.exists() else True

    # without --locked the moved tag is pulled and the lock follows it
    _build(path, Store(tmp_path / "fresh4"))
    lock = json.loads((tmp_path / "app" / "Modelfile.lock").read_text())
    assert lock["inputs"][0]["digest"] == v2


def test_from_registry_by_digest(registry: reg.Registry, source: Store, tmp_path: Path) -> None:
    digest = registry_seed.seed(registry.url, source, "counter:latest", "library/pinned", "v1")
    ref = f"{registry.host}/library/pinned:v1@{digest}"
    path = _modelfile(tmp_path / "app", f"FROM {ref}\n")
    store = Store(tmp_path / "models")
    _build(path, store)
    assert store.read_manifest(f"{registry.host}/library/pinned:v1").digest == digest
    wrong = "sha256:" + "0" * 64
    path.write_text(f"FROM {registry.host}/library/pinned:v1@{wrong}\n")
    with pytest.raises(DiagnosticError) as caught:
        _build(path, Store(tmp_path / "other"))
    assert _codes(caught.value) == ["MF222"]


def test_unreachable_registry_is_a_located_error(tmp_path: Path) -> None:
    text = "# a base nobody can reach\nFROM 127.0.0.1:9/library/x:v1\n"
    path = _modelfile(tmp_path / "app", text)
    with pytest.raises(DiagnosticError) as caught:
        _build(path, Store(tmp_path / "models"))
    assert _codes(caught.value) == ["MF222"]
    diag = caught.value.diagnostics[0]
    assert diag.span is not None
    assert path.read_text()[diag.span.start :].startswith("FROM 127.0.0.1:9")
    assert diag.hint is not None and "127.0.0.1:9" in diag.hint and "--to" in diag.hint

    cli_run = _mfc("build", "-t", "app", str(path.parent), models=tmp_path / "models")
    assert cli_run.returncode == 1
    assert "Traceback" not in cli_run.stderr
    assert "error[MF222]" in cli_run.stderr and "Modelfile:2:1" in cli_run.stderr, cli_run.stderr


def test_bare_names_never_go_to_a_registry(tmp_path: Path) -> None:
    path = _modelfile(tmp_path / "app", f"FROM nosuch@sha256:{'a' * 64}\n")
    with pytest.raises(DiagnosticError) as caught:
        _build(path, Store(tmp_path / "models"))
    assert _codes(caught.value) == ["MF202"]


def test_pull_to_layout_then_offline_build(
    source: Store, tmp_path: Path, fixture_models: dict[str, Path]
) -> None:
    if not reg.available():
        pytest.skip(f"{reg.BINARY} is not installed: {reg.INSTALL_HINT}")
    own = reg.start_registry(tmp_path / "registry")  # stopped below: the build is offline
    try:
        digest = registry_seed.seed(own.url, source, "counter:latest", "library/vendored", "v1")
        other = registry_seed.seed(own.url, source, "other:latest", "library/second", "v2")
        cache = tmp_path / "registry_cache"
        runner = CliRunner()
        env = {"MFC_MODELS": str(tmp_path / "unused")}
        for name in (f"{own.host}/library/vendored:v1", f"{own.host}/library/second:v2"):
            r = runner.invoke(cli, ["pull", "--to", str(cache), name], env=env)
            assert r.exit_code == 0, r.output
            assert f"into {cache}" in r.output
        again = runner.invoke(cli, ["pull", "--to", str(cache), f"{own.host}/library/vendored:v1"])
        assert again.exit_code == 0 and "0 B downloaded" in again.output, again.output
    finally:
        own.stop()
    assert not (tmp_path / "unused").exists()  # the store was not touched
    assert not (cache / ".mfc-partial").exists()
    assert json.loads((cache / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((cache / "index.json").read_text())
    names = {m["annotations"][mt.OCI_REF_NAME]: m["digest"] for m in index["manifests"]}
    assert names == {
        f"{own.host}/library/vendored:v1": digest,
        f"{own.host}/library/second:v2": other,
    }

    path = _modelfile(tmp_path / "app", f"FROM {own.host}/library/vendored:v1\nSYSTEM offline\n")
    store = Store(tmp_path / "models")
    _build(path, store, registry_cache=cache)
    lock = json.loads((tmp_path / "app" / "Modelfile.lock").read_text())
    assert lock["inputs"][0]["kind"] == "registry_cache"
    assert lock["inputs"][0]["digest"] == digest

    r = CliRunner().invoke(cli, ["pull", "--to", str(tmp_path / "app"), "127.0.0.1:9/library/x"])
    assert r.exit_code == 1 and "not an OCI layout" in r.output, r.output
