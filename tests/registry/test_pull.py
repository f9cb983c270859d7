"""mfc pull against a real registry (Debian's docker-registry), through a counting proxy."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from mfc.cli.main import cli
from mfc.registry.client import RegistryError, RegistryNotFoundError
from mfc.registry.progress import Event, LayerProgress, Status
from mfc.registry.pull import pull
from mfc.registry.transfer import TransferOptions
from mfc.store import Descriptor, InvalidNameError, Manifest, Store, canonical_json, partial
from mfc.store import media_types as mt
from mfc.testing import proxy as px
from mfc.testing import registry as reg
from mfc.testing import registry_seed
from mfc.testing.server import build_counter

MiB = 1 << 20
SMALL = TransferOptions(part_size=2 * MiB, max_connections=4, stall_timeout=2, backoff=0.05)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, fixture_models: dict[str, Path]) -> Store:
    """A store with the counter model and a 24 MiB random 'model' (for parts)."""
    store = Store(tmp_path_factory.mktemp("src") / "models")
    build_counter(store, fixture_models, "counter:latest")
    data = random.Random(11).randbytes(24 * MiB)
    layer = store.put_bytes(data)
    config = store.put_bytes(canonical_json({"model_format": "gguf"}))
    store.write_manifest(
        "big:latest",
        Manifest(Descriptor(mt.CONFIG, *config), (Descriptor(mt.MODEL, *layer),)),
    )
    return store


@pytest.fixture(scope="module")
def seeded(registry: reg.Registry, source: Store) -> dict[str, str]:
    return {
        "counter": registry_seed.seed(
            registry.url, source, "counter:latest", "library/counter", "v1"
        ),
        "big": registry_seed.seed(registry.url, source, "big:latest", "library/big", "v1"),
    }


@pytest.fixture
def proxy(registry: reg.Registry) -> Iterator[px.Proxy]:
    p = px.start_proxy(registry.url)
    try:
        yield p
    finally:
        p.stop()


def test_round_trip_same_digest_and_bytes(
    registry: reg.Registry, source: Store, seeded: dict[str, str], tmp_path: Path
) -> None:
    store = Store(tmp_path / "models")
    events: list[Event] = []

    def record(event: Event) -> None:
        events.append(event)

    result = pull(store, f"{registry.host}/library/counter:v1", progress=record)
    original = source.read_manifest("counter:latest")
    assert result.digest == seeded["counter"] == original.digest
    pulled = store.read_manifest(f"{registry.host}/library/counter:v1")
    assert pulled.to_bytes() == original.to_bytes()
    for d in original.descriptors():
        assert store.read_blob(d.digest) == source.read_blob(d.digest)
    assert store.verify() == []
    texts = [e.text for e in events if isinstance(e, Status)]
    assert texts == ["pulling manifest", "verifying sha256 digest", "writing manifest", "success"]
    layers = [e for e in events if isinstance(e, LayerProgress)]
    assert {e.digest for e in layers if e.completed == e.total} == {
        d.digest for d in original.descriptors()
    }
    assert not (store.root / partial.PARTIAL_DIR).exists() or not any(
        (store.root / partial.PARTIAL_DIR).iterdir()
    )


def test_present_blobs_are_not_downloaded(
    proxy: px.Proxy, seeded: dict[str, str], tmp_path: Path
) -> None:
    store = Store(tmp_path / "models")
    name = f"{proxy.host}/library/counter:v1"
    first = pull(store, name)
    assert first.downloaded > 0
    proxy.hits.clear()
    again = pull(store, name)
    assert again.downloaded == 0 and again.digest == first.digest
    assert [h.path for h in proxy.hits if "/blobs/" in h.path] == []
    assert [h.path for h in proxy.hits] == ["/v2/library/counter/manifests/v1"]


def test_parts_download_in_parallel(
    proxy: px.Proxy, source: Store, seeded: dict[str, str], tmp_path: Path
) -> None:
    proxy.faults.delay_per_chunk = 0.002  # long enough for requests to overlap visibly
    store = Store(tmp_path / "models")
    result = pull(store, f"{proxy.host}/library/big:v1", options=SMALL)
    assert result.digest == seeded["big"]
    ranged = [h for h in proxy.hits if h.range is not None]
    assert len(ranged) == 12  # 24 MiB in 2 MiB parts
    overlapping = max(sum(1 for o in ranged if o.start < h.end and h.start < o.end) for h in ranged)
    assert overlapping >= 3  # each overlaps others: up to 4 at once
    assert proxy.blob_bytes() == result.size  # nothing downloaded twice
    assert store.verify() == []


def test_corrupt_byte_fails_naming_the_layer_and_leaves_nothing(
    proxy: px.Proxy, source: Store, seeded: dict[str, str], tmp_path: Path
) -> None:
    proxy.faults.corrupt_blob_offset = 5 * MiB + 7
    store = Store(tmp_path / "models")
    layer = source.read_manifest("big:latest").layers[0].digest
    with pytest.raises(RegistryError) as info:
        pull(store, f"{proxy.host}/library/big:v1", options=SMALL)
    message = str(info.value)
    assert layer in message and proxy.host in message and "hashes to" in message
    assert not store.has_blob(layer)
    assert store.list_models() == []
    assert store.verify() == []
    assert [p.name for p in (store.root / partial.PARTIAL_DIR).iterdir()] == [
        f"{layer.replace(':', '-')}.lock"
    ]


def test_stalled_connection_is_retried(
    proxy: px.Proxy, seeded: dict[str, str], tmp_path: Path
) -> None:
    proxy.faults.stall_once = 4.0  # longer than the 2 s stall timeout
    store = Store(tmp_path / "models")
    result = pull(store, f"{proxy.host}/library/big:v1", options=SMALL)
    assert result.digest == seeded["big"]
    assert store.verify() == []


_CHILD = """
import sys
from mfc.registry.pull import pull
from mfc.registry.transfer import TransferOptions
from mfc.store import Store
opts = TransferOptions(part_size=2 << 20, max_connections=4)
pull(Store(sys.argv[1]), sys.argv[2], options=opts)
"""


def test_kill_9_then_resume(registry: reg.Registry, seeded: dict[str, str], tmp_path: Path) -> None:
    """Killed at random moments, each resume downloads only what is not recorded: in total at
    most the blob plus, per kill, the parts that were in flight (4 × 2 MiB)."""
    proxy = px.start_proxy(registry.url, px.Faults(delay_per_chunk=0.004))
    try:
        root = tmp_path / "models"
        name = f"{proxy.host}/library/big:v1"
        rng = random.Random(5)
        kills = 0
        for _ in range(3):
            child = subprocess.Popen([sys.executable, "-c", _CHILD, str(root), name])
            time.sleep(rng.uniform(0.3, 1.2))
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
                kills += 1
            child.wait()
        proxy.faults.delay_per_chunk = 0
        result = pull(Store(root), name, options=TransferOptions(part_size=2 * MiB))
        assert result.digest == seeded["big"]
        assert Store(root).verify() == []
        size = 24 * MiB
        assert proxy.blob_bytes() <= size + 307 + kills * 4 * 2 * MiB
        assert kills >= 1
    finally:
        proxy.stop()


def test_gc_keeps_a_held_partial_and_removes_an_abandoned_one(tmp_path: Path) -> None:
    store = Store(tmp_path / "models")
    held, dropped = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    for digest in (held, dropped):
        p = partial.partial(store.root, digest)
        p.data.parent.mkdir(parents=True, exist_ok=True)
        p.data.write_bytes(b"x" * 10)
        p.state.write_text("{}")
    script = (
        "import sys,time; from pathlib import Path; from mfc.store import partial\n"
        f"with partial.holding(Path({str(store.root)!r}), {held!r}):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        removed = store.gc()
        paths = {i.path for i in removed}
        assert partial.partial(store.root, dropped).data in paths
        assert partial.partial(store.root, held).data.exists()
        assert not partial.partial(store.root, dropped).data.exists()
    finally:
        holder.kill()
        holder.wait()
    store.gc()
    assert not partial.partial(store.root, held).data.exists()


# -- bad input: each a clear error, nothing written ----------------------------------------


def _empty(store: Store) -> bool:
    return not store.root.exists() or not (store.root / "manifests").exists()


def test_unknown_host_fails_quickly(tmp_path: Path) -> None:
    store = Store(tmp_path / "models")
    start = time.monotonic()
    with pytest.raises(RegistryError, match=r"cannot reach the registry no-such-host\.invalid"):
        pull(store, "no-such-host.invalid/library/x:1")
    assert time.monotonic() - start < 15
    assert _empty(store)


def test_missing_model(registry: reg.Registry, tmp_path: Path) -> None:
    store = Store(tmp_path / "models")
    with pytest.raises(RegistryNotFoundError, match=r"404.*(MANIFEST_UNKNOWN|NAME_UNKNOWN)"):
        pull(store, f"{registry.host}/library/absent:v1")
    assert _empty(store)


def test_manifest_over_4_mib_is_refused(proxy: px.Proxy, tmp_path: Path) -> None:
    proxy.faults.manifest_body = b" " * (5 * MiB)
    store = Store(tmp_path / "models")
    with pytest.raises(RegistryError, match="over 4 MiB"):
        pull(store, f"{proxy.host}/library/counter:v1")
    assert _empty(store)


def test_malformed_layer_digest_is_refused(
    proxy: px.Proxy, source: Store, seeded: dict[str, str], tmp_path: Path
) -> None:
    good = source.read_manifest("counter:latest").to_json()
    good["layers"][0]["digest"] = "sha256:../../etc/passwd"
    proxy.faults.manifest_body = canonical_json(good)
    store = Store(tmp_path / "models")
    with pytest.raises(RegistryError, match=r"layers\[0\].*digest"):
        pull(store, f"{proxy.host}/library/counter:v1")
    assert _empty(store)
    assert not [h for h in proxy.hits if "/blobs/" in h.path]


@pytest.mark.parametrize(
    "name",
    ["127.0.0.1:1/../x:1", "/etc/passwd", "h/ns/..:1", "http://h/ns/m:1", "127.0.0.1:5000/m"],
)
def test_bad_names(name: str, tmp_path: Path) -> None:
    store = Store(tmp_path / "models")
    with pytest.raises(InvalidNameError):
        pull(store, name)
    assert not store.root.exists()


def test_cli_pull(registry: reg.Registry, seeded: dict[str, str], tmp_path: Path) -> None:
    env = {"MFC_MODELS": str(tmp_path / "models")}
    name = f"{registry.host}/library/counter:v1"
    result = CliRunner().invoke(cli, ["pull", name, "--max-connections", "2"], env=env)
    assert result.exit_code == 0, result.output
    assert f"pulled {name} {seeded['counter']}" in result.output
    bad = CliRunner().invoke(cli, ["pull", f"{registry.host}/library/absent:v1"], env=env)
    assert bad.exit_code == 1
    assert f"the registry {registry.host} answered 404" in bad.output


def test_server_pull_stops_when_its_client_leaves(
    proxy: px.Proxy, seeded: dict[str, str], tmp_path: Path
) -> None:
    """A streamed /api/pull whose client disconnects stops downloading (Ollama cancels the
    request's context); what is on disk stays for the next pull to resume."""
    from mfc.testing.server import start_server, stop_server

    proxy.faults.delay_per_chunk = 0.02  # 24 MiB at 64 KiB per 20 ms: ~8 s
    store = Store(tmp_path / "models")
    server = start_server(tmp_path, store)
    try:
        body = {"model": f"{proxy.host}/library/big:v1", "stream": True}
        with httpx.stream("POST", server.url + "/api/pull", json=body, timeout=30) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if json.loads(line).get("completed"):
                    break  # bytes are flowing: leave
        time.sleep(2.0)  # the worker notices at its next progress report
        before = proxy.blob_bytes()
        time.sleep(1.5)
        assert proxy.blob_bytes() == before  # nothing more is downloaded
        assert before < 24 * MiB
        assert "big" not in " ".join(
            m["name"] for m in httpx.get(server.url + "/api/tags").json()["models"]
        )
        assert "Traceback" not in server.logs()
    finally:
        stop_server(server)
