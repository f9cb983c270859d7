"""The pull's data path (issue 11, benchmark): blob bodies straight from the socket
(mfc.registry.rawget) into reused buffers lent to the in-order hasher, and every case the
fast path leaves to httpx (a 401, an error, a proxy) still pulling the same bytes."""

from __future__ import annotations

import hashlib
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mfc.registry import rawget, transfer
from mfc.registry.auth import ENV_PASSWORD, ENV_USERNAME, auth_for
from mfc.registry.client import RegistryClient
from mfc.registry.pull import pull
from mfc.registry.push import push
from mfc.registry.transfer import TransferOptions
from mfc.store import Descriptor, Manifest, Store, canonical_json
from mfc.store import media_types as mt
from mfc.testing import registry as reg
from mfc.testing import registry_seed

from .conftest import BASIC_PASSWORD

MiB = 1 << 20
SIZE = 12 * MiB + 12345  # parts of 2 MiB, the last one short


@pytest.fixture(scope="module")
def seeded(
    registry: reg.Registry, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Store, Descriptor, str]:
    store = Store(tmp_path_factory.mktemp("fast-src") / "models")
    layer = Descriptor(mt.MODEL, *store.put_bytes(random.Random(3).randbytes(SIZE)))
    config = store.put_bytes(canonical_json({"model_format": "gguf"}))
    store.write_manifest("fast:v1", Manifest(Descriptor(mt.CONFIG, *config), (layer,)))
    digest = registry_seed.seed(registry.url, store, "fast:v1", "library/fast", "v1")
    return store, layer, digest


@pytest.fixture
def raw_bodies(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Statuses of the responses the fast path served (it still does the real requests)."""
    served: list[int] = []
    real = rawget.open_raw

    def counting(*args: object, **kw: object) -> rawget.RawBody | None:
        body = real(*args, **kw)  # type: ignore[arg-type]
        if body is not None:
            served.append(body.status)
        return body

    monkeypatch.setattr(transfer, "open_raw", counting)
    yield served


@pytest.mark.parametrize("connections", [1, 4])
def test_blob_parts_come_straight_from_the_socket(
    registry: reg.Registry,
    seeded: tuple[Store, Descriptor, str],
    raw_bodies: list[int],
    tmp_path: Path,
    connections: int,
) -> None:
    source, layer, digest = seeded
    store = Store(tmp_path / "models")
    options = TransferOptions(part_size=2 * MiB, max_connections=connections)
    result = pull(store, f"{registry.host}/library/fast:v1", options=options)
    assert result.digest == digest
    assert sorted(raw_bodies) == [200] + [206] * 7  # the config whole, every part: no httpx
    assert store.blob_path(layer.digest).read_bytes() == source.blob_path(layer.digest).read_bytes()
    assert store.verify() == []


def test_fast_path_off_pulls_the_same_bytes_through_httpx(
    registry: reg.Registry,
    seeded: tuple[Store, Descriptor, str],
    raw_bodies: list[int],
    tmp_path: Path,
) -> None:
    _, layer, digest = seeded
    store = Store(tmp_path / "models")
    options = TransferOptions(part_size=2 * MiB, fast_path=False)
    assert pull(store, f"{registry.host}/library/fast:v1", options=options).digest == digest
    assert raw_bodies == []
    assert store.verify() == [] and store.has_blob(layer.digest, SIZE)


def test_a_single_part_blob_is_one_plain_get(
    registry: reg.Registry,
    seeded: tuple[Store, Descriptor, str],
    raw_bodies: list[int],
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "models")
    options = TransferOptions(part_size=64 * MiB)
    assert pull(store, f"{registry.host}/library/fast:v1", options=options).digest == seeded[2]
    assert raw_bodies == [200, 200]  # the config and the layer, each one GET


def test_basic_auth_blobs_use_the_fast_path_with_the_credentials(
    basic_registry: reg.Registry,
    seeded: tuple[Store, Descriptor, str],
    raw_bodies: list[int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, layer, _ = seeded
    host = basic_registry.host
    env = {ENV_USERNAME: "alice", ENV_PASSWORD: BASIC_PASSWORD}
    name = f"{host}/alice/fast:v1"
    source.copy("fast:v1", name)
    with RegistryClient(host, auth=auth_for(host, env=env)) as c:
        pushed = push(source, name, client=c)
    path = f"/v2/alice/fast/blobs/{layer.digest}"
    with RegistryClient(host, auth=auth_for(host, env={})) as anonymous:
        assert rawget.open_raw(anonymous, path, {}, 5.0) is None  # 401: httpx's to answer
    monkeypatch.setenv(ENV_USERNAME, "alice")
    monkeypatch.setenv(ENV_PASSWORD, BASIC_PASSWORD)
    store = Store(tmp_path / "models")
    result = pull(store, name, options=TransferOptions(part_size=4 * MiB))
    assert result.digest == pushed.digest
    assert sorted(raw_bodies) == [200] + [206] * 4  # the manifest GET's credentials, up front
    assert store.verify() == []
    assert BASIC_PASSWORD not in basic_registry.logs()


def test_fast_path_declines_errors_and_proxies(
    registry: reg.Registry,
    seeded: tuple[Store, Descriptor, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, layer, _ = seeded
    path = f"/v2/library/fast/blobs/{layer.digest}"
    with RegistryClient(registry.host) as client:
        missing = f"/v2/library/fast/blobs/sha256:{'0' * 64}"
        assert rawget.open_raw(client, missing, {}, 5.0) is None  # 404: httpx reports it
        body = rawget.open_raw(client, path, {"Range": "bytes=5-9"}, 5.0)
        assert body is not None and body.status == 206 and body.remaining == 5
        view = memoryview(bytearray(16))
        got = body.readinto(view)
        body.close()
        expected = source.blob_path(layer.digest).read_bytes()[5:10]
        assert bytes(view[:got]) == expected[:got] and got > 0
        for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
        assert rawget.open_raw(client, path, {}, 5.0) is None  # httpx would use the proxy
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        bypassed = rawget.open_raw(client, path, {"Range": "bytes=0-0"}, 5.0)
        assert bypassed is not None
        bypassed.close()


def test_in_order_hasher_takes_lent_buffers_and_reads_back_the_rest(tmp_path: Path) -> None:
    """Parts written in a scrambled order by several threads, in chunks of odd sizes: the
    digest is the file's, the chunk written at the frontier is hashed from the writer's
    buffer (lent, then given back), chunks far ahead are read back from the file."""
    rng = random.Random(7)
    size, part_size = 3 * MiB + 999, MiB
    data = rng.randbytes(size)
    fd = os.open(tmp_path / "blob", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, size)
        parts = transfer._parts(size, part_size)
        hasher = transfer._InOrderHasher(fd, parts, set())
        thread = threading.Thread(target=hasher.run)
        thread.start()
        cancel = threading.Event()
        rings = [transfer._Ring(2, 200_000) for _ in parts]

        def write(part: transfer._Part) -> None:
            ring = rings[part.index]
            at = part.start
            while at < part.end:
                buf = hasher.next_buffer(ring, cancel)
                n = min(len(buf), part.end - at, rng.choice([1, 4096, 65537, 200_000]))
                buf[:n] = data[at : at + n]
                os.pwrite(fd, buf[:n], at)
                hasher.offer(part, at, buf[:n], transfer._Lease(ring, ring.current))
                at += n

        order = list(reversed(parts))  # the last part first: all of it is read back later
        workers = [threading.Thread(target=write, args=(p,)) for p in order]
        for w in workers:
            w.start()
            w.join(timeout=0.01)
        for w in workers:
            w.join()
        thread.join(timeout=30)
        assert not thread.is_alive() and hasher.error is None
        assert hasher.hash.hexdigest() == hashlib.sha256(data).hexdigest()
        assert 0 < hasher.read_back < size  # some from the file, some from lent buffers
        assert not any(any(r.lent) for r in rings)  # every lent buffer was given back
    finally:
        os.close(fd)


def test_a_writer_keeps_a_spare_buffer_and_never_waits_for_the_hasher(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "blob", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        parts = transfer._parts(2 * MiB, MiB)
        hasher = transfer._InOrderHasher(fd, parts, set())  # not running: never gives back
        ring = transfer._Ring(2, 4096)
        never = threading.Event()
        first = hasher.next_buffer(ring, never)
        os.pwrite(fd, first, 0)
        assert hasher.offer(parts[0], 0, first, transfer._Lease(ring, ring.current))
        second = hasher.next_buffer(ring, never)  # at once: the spare
        assert ring.lent == [True, False] and second is ring.buffers[1]
        os.pwrite(fd, second, 4096)
        # Next in line, but lending it would leave the writer without a buffer: kept, and
        # the hasher will read those bytes back from the file.
        assert not hasher.offer(parts[0], 4096, second, transfer._Lease(ring, ring.current))
        assert hasher.next_buffer(ring, never) is second
        assert hasher.written[0] == 8192 and hasher.tail == 4096
    finally:
        os.close(fd)


def test_a_stopped_hasher_releases_a_writer_waiting_for_a_buffer(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "blob", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        hasher = transfer._InOrderHasher(fd, transfer._parts(MiB, MiB), set())
        ring = transfer._Ring(2, 4096)
        ring.lent = [True, True]  # as if both were lent
        outcome: list[str] = []

        def wait() -> None:
            try:
                hasher.next_buffer(ring, threading.Event())
                outcome.append("got a buffer")
            except transfer._Cancelled:
                outcome.append("cancelled")

        waiter = threading.Thread(target=wait)
        waiter.start()
        waiter.join(timeout=0.2)
        assert waiter.is_alive()
        hasher.stop()
        waiter.join(timeout=5)
        assert outcome == ["cancelled"]
    finally:
        os.close(fd)


def test_default_connections_suit_where_the_registry_is() -> None:
    assert transfer.default_connections("registry.example.com", cpus=2) == 4
    assert transfer.default_connections("10.0.0.5:5000", cpus=64) == 4
    assert transfer.default_connections("127.0.0.1:5000", cpus=2) == 1  # shares 2 CPUs
    assert transfer.default_connections("localhost", cpus=1) == 1
    assert transfer.default_connections("[::1]:5000", cpus=4) == 2
    assert transfer.default_connections("localhost:5000", cpus=64) == 4
    assert transfer.options_from(None, {}).max_connections is None  # decided per registry
    assert transfer.options_from(None, {transfer.ENV_STREAMS: "3"}).max_connections == 3
    assert transfer.options_from(2, {transfer.ENV_STREAMS: "3"}).max_connections == 2
    with pytest.raises(ValueError, match="whole number"):
        transfer.options_from(None, {transfer.ENV_STREAMS: "many"})
