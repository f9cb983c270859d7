"""`POST /api/push` of a live `mfc serve`, driven by the official ollama client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from mfc.store import Store
from mfc.testing.registry import Registry
from mfc.testing.server import Server, start_server, stop_server

from .helpers import counter_store, registry_manifest


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, fixture_models: dict[str, Path]
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("serve-push")
    server = start_server(tmp, counter_store(tmp, fixture_models))
    try:
        yield server
    finally:
        stop_server(server)


def test_push_streams_ollama_progress(served: Server, registry: Registry) -> None:
    store: Store = served.store
    name = f"{registry.host}/api/counter:latest"
    store.copy("counter", name)
    client = ollama.Client(host=served.url)
    parts = list(client.push(name, insecure=True, stream=True))
    statuses = [p.status for p in parts]
    assert statuses[0] == "retrieving manifest"
    assert statuses[-2:] == ["pushing manifest", "success"]
    manifest = store.read_manifest(name)
    model = manifest.layers[0]
    layer = [p for p in parts if p.digest == model.digest]
    assert layer and layer[0].status == f"pushing {model.digest[7:19]}"
    assert layer[-1].total == layer[-1].completed == model.size
    r = registry_manifest(registry, "api/counter", "latest")
    assert r.content == manifest.to_bytes()
    # Not streamed: one object, Ollama's.
    again = client.push(name, insecure=True, stream=False)
    assert again.status == "success"


def test_push_errors(served: Server, registry: Registry) -> None:
    client = ollama.Client(host=served.url)
    with pytest.raises(ollama.ResponseError) as missing:
        client.push(f"{registry.host}/api/missing:latest", stream=False)
    assert missing.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as ollama_ai:
        client.push("counter", stream=False)
    assert ollama_ai.value.status_code == 400
    assert "key-signature" in str(ollama_ai.value)
    r = httpx.post(served.url + "/api/push", json={"model": "../x"})
    assert r.status_code == 400
