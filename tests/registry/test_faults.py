"""Pull faults through the counting proxy (issue 11): 20 kill -9s at random byte offsets, each
resume counted part by part; dropped connections and a stall retried from the byte reached;
a corrupt byte through the CLI (located error, `mfc verify` clean, no model). test_pull.py
has the in-process corrupt-byte, stall and 3-kill tests; these extend them."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from mfc.cli.main import cli
from mfc.registry.pull import pull
from mfc.registry.transfer import TransferOptions
from mfc.store import Descriptor, Manifest, Store, canonical_json, partial
from mfc.store import media_types as mt
from mfc.testing import proxy as px
from mfc.testing import registry as reg
from mfc.testing import registry_seed

MiB = 1 << 20
KiB = 1 << 10
SIZE = 16 * MiB
PART = 256 * KiB
CONNECTIONS = 4
KILLS = 20


@pytest.fixture(scope="module")
def seeded(
    registry: reg.Registry, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Descriptor, str]:
    """A 16 MiB random layer pushed as library/faults:v1: the layer and the model's digest."""
    store = Store(tmp_path_factory.mktemp("faults-src") / "models")
    blob = store.put_bytes(random.Random(23).randbytes(SIZE))
    config = store.put_bytes(canonical_json({"model_format": "gguf"}))
    model = Descriptor(mt.MODEL, *blob)
    store.write_manifest("faults:v1", Manifest(Descriptor(mt.CONFIG, *config), (model,)))
    return model, registry_seed.seed(registry.url, store, "faults:v1", "library/faults", "v1")


@pytest.fixture(scope="module")
def layer(seeded: tuple[Descriptor, str]) -> Descriptor:
    return seeded[0]


@pytest.fixture
def proxy(registry: reg.Registry) -> Iterator[px.Proxy]:
    p = px.start_proxy(registry.url)
    try:
        yield p
    finally:
        p.stop()


def _layer_gets(hits: list[px.Hit], digest: str) -> list[px.Hit]:
    return [h for h in hits if h.method == "GET" and h.path.endswith(f"/blobs/{digest}")]


def _received(proxy: px.Proxy, first: int) -> int:
    """Blob bytes sent for the requests from ``proxy.hits[first]`` on (this attempt's)."""
    return sum(h.sent for h in proxy.hits[first:] if "/blobs/" in h.path)


def _part_of(hit: px.Hit) -> int:
    assert hit.range is not None, "a 16 MiB blob in 256 KiB parts is fetched by Range only"
    m = re.fullmatch(r"bytes=(\d+)-(\d+)", hit.range)
    assert m, hit.range
    return int(m.group(1)) // PART


_CHILD = f"""
import sys
from mfc.registry.pull import pull
from mfc.registry.transfer import TransferOptions
from mfc.store import Store
opts = TransferOptions(part_size={PART}, max_connections={CONNECTIONS})
pull(Store(sys.argv[1]), sys.argv[2], options=opts)
"""


def test_20_kills_at_random_offsets_then_resume(
    registry: reg.Registry, seeded: tuple[Descriptor, str], tmp_path: Path
) -> None:
    """Each pull is killed once this attempt has received a random number of layer bytes.
    After each kill, the parts recorded as done are never requested again, and what was in
    flight (at most one part per connection) is all that is fetched twice: the proxy's
    byte count is exactly the blob plus those counted in-flight bytes."""
    layer, digest = seeded
    proxy = px.start_proxy(registry.url, px.Faults(delay_per_chunk=0.01))
    try:
        root = tmp_path / "models"
        name = f"{proxy.host}/library/faults:v1"
        held = partial.partial(root, layer.digest)
        rng = random.Random(20)
        recorded: set[int] = set()
        kills = 0
        lost: list[tuple[list[px.Hit], set[int]]] = []
        in_flight_counts: list[int] = []
        deadline = time.monotonic() + 90
        while kills < KILLS:
            assert time.monotonic() < deadline, f"only {kills} kills"
            first = len(proxy.hits)
            offset = rng.randrange(64 * KiB, 1536 * KiB)  # bytes into this attempt
            child = subprocess.Popen([sys.executable, "-c", _CHILD, str(root), name])
            while child.poll() is None and _received(proxy, first) < offset:
                time.sleep(0.002)
            if child.poll() is not None:
                break  # finished before the offset: nothing left to kill
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            kills += 1
            attempt = _layer_gets(proxy.hits[first:], layer.digest)
            assert attempt, "killed before any layer request"
            asked = {_part_of(h) for h in attempt}
            assert not asked & recorded, "a part recorded as done was downloaded again"
            now = set((partial.read_state(held) or {}).get("done", []))
            assert recorded <= now  # records only grow
            in_flight = asked - now
            assert len(in_flight) <= CONNECTIONS
            in_flight_counts.append(len(in_flight))
            lost.append((attempt, in_flight))  # bytes summed at the end: a killed
            # connection's proxy thread may still send a chunk or two into the dead socket
            recorded = now
        assert kills == KILLS, f"the pull finished after {kills} kills: make the blob larger"
        first = len(proxy.hits)
        proxy.faults.delay_per_chunk = 0
        result = pull(Store(root), name, options=TransferOptions(part_size=PART))
        assert result.digest == digest
        assert Store(root).verify() == []
        assert not {_part_of(h) for h in _layer_gets(proxy.hits[first:], layer.digest)} & recorded
        wasted = sum(h.sent for attempt, parts in lost for h in attempt if _part_of(h) in parts)
        layer_bytes = sum(h.sent for h in _layer_gets(proxy.hits, layer.digest))
        # Nothing fetched twice but the in-flight parts' bytes, counted above.
        assert layer_bytes == SIZE + wasted
        assert wasted <= sum(in_flight_counts) * PART <= KILLS * CONNECTIONS * PART
        assert sum(in_flight_counts) > 0 and recorded  # the kills landed mid-transfer
    finally:
        proxy.stop()


def test_dropped_connections_and_a_stall_resume_from_the_byte_reached(
    proxy: px.Proxy, layer: Descriptor, tmp_path: Path
) -> None:
    """Three blob responses are cut off after 300 KiB and one stalls past the timeout: each
    part is retried from the byte it reached, so no byte crosses the proxy twice."""
    proxy.faults.drop_after, proxy.faults.drops = 300 * KiB, 3
    proxy.faults.stall_once = 3.0
    store = Store(tmp_path / "models")
    options = TransferOptions(part_size=MiB, max_connections=4, stall_timeout=1.5, backoff=0.05)
    result = pull(store, f"{proxy.host}/library/faults:v1", options=options)
    assert proxy.dropped == 3 and proxy._stalled
    assert store.verify() == []
    assert store.has_blob(layer.digest) and result.downloaded == result.size
    gets = _layer_gets(proxy.hits, layer.digest)
    starts = [int(re.findall(r"\d+", h.range or "bytes=0-0")[0]) for h in gets]
    assert len(gets) == SIZE // MiB + 4  # 16 parts + a retry per drop and for the stall
    assert sum(1 for s in starts if s % MiB) == 4  # the retries start mid-part
    assert sum(h.sent for h in gets) == SIZE  # resumed, not re-fetched


def test_corrupt_byte_cli_located_error_verify_clean_no_model(
    proxy: px.Proxy, layer: Descriptor, tmp_path: Path
) -> None:
    proxy.faults.corrupt_blob_offset = 9 * MiB + 3
    env = {"MFC_MODELS": str(tmp_path / "models"), "MFC_MAX_TRANSFER_STREAMS": "4"}
    name = f"{proxy.host}/library/faults:v1"
    runner = CliRunner()
    bad = runner.invoke(cli, ["pull", name], env=env)
    assert bad.exit_code == 1, bad.output
    assert f"layer {layer.digest} ({mt.MODEL})" in bad.output
    assert f"registry {proxy.host} (library/faults) hashes to sha256:" in bad.output
    verify = runner.invoke(cli, ["verify"], env=env)
    assert verify.exit_code == 0, verify.output
    assert runner.invoke(cli, ["show", name], env=env).exit_code != 0
    store = Store(tmp_path / "models")
    assert store.list_models() == [] and not store.has_blob(layer.digest)
    proxy.faults.corrupt_blob_offset = None  # the registry heals: a new pull starts over, clean
    good = runner.invoke(cli, ["pull", name], env=env)
    assert good.exit_code == 0, good.output
    assert store.verify() == [] and store.has_blob(layer.digest)
