"""`mfc.registry.push` against a real distribution registry (open, no auth)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mfc.registry.client import RegistryError
from mfc.registry.progress import Event, LayerProgress, Status
from mfc.registry.push import push
from mfc.store import ModelNotFoundError, Store
from mfc.testing.registry import Registry

from .helpers import access_lines, blob_ok, counter_store, registry_manifest


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, fixture_models: dict[str, Path]) -> Store:
    return counter_store(tmp_path_factory.mktemp("push"), fixture_models, 'SYSTEM "hi"\n')


def test_push_sends_the_store_bytes_in_chunks(store: Store, registry: Registry) -> None:
    name = f"{registry.host}/mfc/counter:latest"
    store.copy("counter", name)
    events: list[Event] = []
    patches_before = len(access_lines(registry, '"PATCH /v2/mfc/counter/blobs/uploads/'))
    result = push(store, name, progress=events.append, chunk_size=100_000)
    manifest = store.read_manifest(name)
    data = manifest.to_bytes()
    assert result.digest == manifest.digest
    r = registry_manifest(registry, "mfc/counter", "latest")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["Docker-Content-Digest"] == manifest.digest
    assert r.headers["Content-Type"] == manifest.media_type
    for desc in manifest.descriptors():
        assert blob_ok(registry, "mfc/counter", desc.digest)
    assert set(result.uploaded) == {d.digest for d in manifest.descriptors()}
    # Ollama's words, in Ollama's order: layers, then the config, then the manifest.
    statuses = [e.text for e in events if isinstance(e, Status)]
    assert statuses == ["retrieving manifest", "pushing manifest", "success"]
    layers = [e for e in events if isinstance(e, LayerProgress)]
    order = list(dict.fromkeys(e.digest for e in layers))
    assert order == [d.digest for d in (*manifest.layers, manifest.config)]
    model = manifest.layers[0]
    seen = [e.completed for e in layers if e.digest == model.digest]
    assert seen == sorted(seen) and seen[-1] == model.size and len(set(seen)) > 3
    assert layers[0].status == f"pushing {model.digest[7:19]}"
    # The model blob is several chunks: one PATCH each.
    patches = len(access_lines(registry, '"PATCH /v2/mfc/counter/blobs/uploads/'))
    assert patches - patches_before >= -(-model.size // 100_000)


def test_second_push_uploads_nothing(store: Store, registry: Registry) -> None:
    name = f"{registry.host}/mfc/again:v1"
    store.copy("counter", name)
    push(store, name)
    posts = len(access_lines(registry, '"POST /v2/mfc/again/blobs/uploads/'))
    result = push(store, name)
    assert result.uploaded == () and result.mounted == ()
    assert len(result.skipped) == len(list(store.read_manifest(name).descriptors()))
    assert len(access_lines(registry, '"POST /v2/mfc/again/blobs/uploads/')) == posts


def test_push_to_a_second_repository_mounts(store: Store, registry: Registry) -> None:
    first = f"{registry.host}/mfc/first:latest"
    store.copy("counter", first)
    push(store, first)
    second = f"{registry.host}/other/second:latest"
    store.copy("counter", second)
    result = push(store, second)
    manifest = store.read_manifest(second)
    assert result.uploaded == () and result.skipped == ()
    assert set(result.mounted) == {d.digest for d in manifest.descriptors()}
    mounts = access_lines(registry, '"POST /v2/other/second/blobs/uploads/?')
    assert mounts and all("mount=sha256" in line for line in mounts)
    for desc in manifest.descriptors():
        assert blob_ok(registry, "other/second", desc.digest)
    r = registry_manifest(registry, "other/second", "latest")
    assert r.content == manifest.to_bytes()


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_skopeo_reads_the_same_manifest(store: Store, registry: Registry) -> None:
    name = f"{registry.host}/mfc/skopeo:t1"
    store.copy("counter", name)
    push(store, name)
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{name}"],
        capture_output=True,
        check=True,
    ).stdout
    assert raw == store.read_manifest(name).to_bytes()
    # (skopeo 1.9's `inspect --config` refuses Docker v2 manifests with non-image layer
    # types — "unsupported docker v2s2 media type" — so the raw manifest is what it can show.)


def test_errors_are_clear(store: Store, registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        push(store, f"{registry.host}/mfc/missing:latest")
    # Nothing listens on this port: a connection error naming the host.
    from mfc.testing.registry import _free_port

    host = f"127.0.0.1:{_free_port()}"
    store.copy("counter", f"{host}/mfc/counter:latest")
    with pytest.raises(RegistryError, match=f"cannot reach {host}"):
        push(store, f"{host}/mfc/counter:latest")
    # The registry's error JSON, decoded: a tag the registry refuses.
    bad = f"{registry.host}/mfc/counter:{'x' * 129}"
    try:
        store.copy("counter", bad)
    except ValueError:
        return  # mfc refuses the name first: fine too
    with pytest.raises(RegistryError, match=registry.host):
        push(store, bad)
