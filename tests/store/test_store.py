"""The content-addressed store: one-pass puts, atomic manifests, gc, verify, Ollama layout."""

from __future__ import annotations

import errno
import hashlib
import io
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mfc.store import (
    DigestMismatchError,
    InvalidDigestError,
    Manifest,
    MissingBlobError,
    ModelNotFoundError,
    Store,
    StoreBusyError,
    StoreError,
    parse_name,
    read_config,
)
from mfc.store import media_types as mt
from mfc.store.blobio import BUFFERS, CHUNK, MAP_CHUNK, SourceChangedError, copy_hashing

from .conftest import stage


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _big(tmp_path: Path, size: int = 2 * CHUNK + 12345) -> tuple[Path, bytes]:
    """Bigger than the copy buffers, so several chunks cycle through the pool."""
    data = hashlib.shake_256(b"mfc").digest(size)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    return path, data


def _leftovers(store: Store) -> list[str]:
    return sorted(os.listdir(store.tmp_dir)) if store.tmp_dir.is_dir() else []


def test_from_env(tmp_path: Path) -> None:
    assert Store.from_env({"MFC_MODELS": str(tmp_path)}).root == tmp_path
    assert Store.from_env({"HOME": "/home/u"}).root == Path("/home/u/.mfc/models")


def test_put_bytes(store: Store) -> None:
    blob = store.put_bytes(b"hello")
    assert blob == (_sha(b"hello"), 5)
    path = store.blob_path(blob.digest)
    assert path.name == "sha256-" + blob.digest[7:]
    assert path.parent == store.root / "blobs"
    assert path.read_bytes() == b"hello"
    assert path.stat().st_mode & 0o777 == 0o644
    assert store.put_bytes(b"hello") == blob  # reused
    assert store.has_blob(blob.digest) and store.has_blob(blob.digest, 5)
    assert not store.has_blob(blob.digest, 6)
    assert _leftovers(store) == []


@pytest.mark.parametrize("link", ["copy", "auto", "hard"])
def test_put_file_modes_hash_like_hashlib(store: Store, tmp_path: Path, link: str) -> None:
    path, data = _big(tmp_path)
    blob = store.put_file(path, link=link)  # type: ignore[arg-type]
    assert blob == (_sha(data), len(data))
    stored = store.blob_path(blob.digest)
    assert stored.read_bytes() == data
    assert (stored.stat().st_ino == path.stat().st_ino) == (link == "hard")
    assert _leftovers(store) == []
    assert store.put_file(path, link=link) == blob  # type: ignore[arg-type]


@pytest.mark.parametrize("link", ["copy", "hard"])
def test_put_file_reports_progress(store: Store, tmp_path: Path, link: str) -> None:
    path, data = _big(tmp_path)
    seen: list[int] = []
    store.put_file(path, link=link, progress=seen.append)  # type: ignore[arg-type]
    assert seen == sorted(seen) and len(seen) >= 3
    assert seen[-1] == len(data)


def test_threads_writing_at_once_leave_a_consistent_store(
    store: Store, fixture_models: dict[str, Path]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    models = [fixture_models["counter-f32.gguf"], fixture_models["counter-f16.gguf"]]

    def work(i: int) -> str:
        m = stage(store, f"t{i}", models[i % 2], template=f"t{i % 3}")
        stage(store, "shared", models[i % 2], template=f"w{i}")
        return m.digest

    with ThreadPoolExecutor(max_workers=8) as pool:
        digests = list(pool.map(work, range(16)))
    listed = {e.name.display: e.digest for e in store.list_models()}
    assert {f"t{i}:latest": d for i, d in enumerate(digests)}.items() <= listed.items()
    assert "shared:latest" in listed
    assert store.verify() == []
    assert _leftovers(store) == []


def test_put_file_expected_digest_mismatch_leaves_nothing(store: Store, tmp_path: Path) -> None:
    path, data = _big(tmp_path)
    with pytest.raises(DigestMismatchError, match="expected sha256:0000"):
        store.put_file(path, expected="sha256:" + "0" * 64)
    assert not store.has_blob(_sha(data))
    assert _leftovers(store) == []


def test_streams_with_uneven_reads_are_copied_exactly(store: Store) -> None:
    """Short reads are topped up to whole (aligned, O_DIRECT) chunks; only the tail is short."""
    data = hashlib.shake_256(b"uneven").digest(3 * CHUNK + 777)
    sizes = itertools.chain([CHUNK, 4096, 1000, 3, CHUNK, CHUNK], itertools.repeat(10**9))
    pos = 0

    class Uneven:
        def readinto(self, buf: bytearray) -> int:
            nonlocal pos
            n = min(next(sizes), len(buf), len(data) - pos)
            buf[:n] = data[pos : pos + n]
            pos += n
            return n

    blob = store.put_stream(Uneven())  # type: ignore[arg-type]
    assert blob == (_sha(data), len(data))
    assert store.blob_path(blob.digest).read_bytes() == data


def test_a_failing_write_stops_the_copy_and_is_raised(tmp_path: Path) -> None:
    """A writer thread's error reaches the caller, and the pipeline does not hang on
    buffers the failed writes would never have handed back (more chunks than buffers)."""
    data = io.BytesIO(hashlib.shake_256(b"fail").digest(3 * BUFFERS * CHUNK // 2))
    target = tmp_path / "read-only"
    target.write_bytes(b"")
    fd = os.open(target, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as exc:
            copy_hashing(data.readinto, fd, direct=False)
    finally:
        os.close(fd)
    assert exc.value.errno == errno.EBADF
    assert data.tell() < len(data.getvalue())  # stopped early


def test_a_failing_stream_leaves_no_blob_and_no_temp(store: Store) -> None:
    class Broken:
        def __init__(self) -> None:
            self.calls = 0

        def readinto(self, buf: bytearray) -> int:
            self.calls += 1
            if self.calls > 2:
                raise OSError("disk went away")
            buf[:4] = b"data"
            return 4

    with pytest.raises(OSError, match="disk went away"):
        store.put_stream(Broken())  # type: ignore[arg-type]
    assert _leftovers(store) == []
    assert list(store.blobs_dir.iterdir()) == []


@pytest.mark.parametrize(
    "digest", ["sha256:../../etc", "sha256:" + "A" * 64, "md5:" + "a" * 32, "sha256-" + "a" * 64]
)
def test_blob_path_validates_digests(store: Store, digest: str) -> None:
    with pytest.raises(InvalidDigestError, match="64 lowercase hex"):
        store.blob_path(digest)


def test_manifest_round_trip_and_case_insensitive_lookup(store: Store, counter: Path) -> None:
    m = stage(store, "Me/Counter:F32", counter)
    path = store.root / "manifests/registry.ollama.ai/Me/Counter/F32"
    assert path.read_bytes() == m.to_bytes()
    assert store.read_manifest("me/counter:f32") == m
    assert store.resolve("ME/COUNTER:f32") == parse_name("Me/Counter:F32")
    config = read_config(store, m)
    assert config["model_family"] == "llama"
    # Writing the same name in another case replaces it: one model per name.
    store.write_manifest("me/counter:f32", m)
    assert [e.name.display for e in store.list_models()] == ["me/counter:f32"]
    assert not path.exists()


def test_write_manifest_refuses_missing_blobs(store: Store, counter: Path) -> None:
    m = stage(store, "counter", counter)
    store.blob_path(m.layers[0].digest).unlink()
    with pytest.raises(MissingBlobError, match=f"{m.layers[0].digest}.*vnd.ollama.image.model"):
        store.write_manifest("other", m)
    with pytest.raises(ModelNotFoundError):
        store.read_manifest("other")


def test_model_not_found_says_where_and_how(store: Store) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        store.read_manifest("nothere:v1")
    text = str(info.value)
    assert "`nothere:v1`" in text
    assert str(store.root / "manifests/registry.ollama.ai/library/nothere/v1") in text
    assert "mfc build" in text and "mfc load" in text


def test_list_remove_copy(store: Store, counter: Path, fixture_models: dict[str, Path]) -> None:
    a = stage(store, "counter", counter)
    b = stage(store, "me/f16:x", fixture_models["counter-f16.gguf"])
    store.copy("counter", "other/name:tag")
    entries = store.list_models()
    assert [(e.name.display, e.digest) for e in entries] == [
        ("counter:latest", a.digest),
        ("me/f16:x", b.digest),
        ("other/name:tag", a.digest),
    ]
    assert entries[0].size == a.size == sum(d.size for d in a.descriptors())
    assert store.remove("ME/F16:X") == parse_name("me/f16:x")
    assert not (store.root / "manifests/registry.ollama.ai/me").exists()  # empty dirs pruned
    with pytest.raises(ModelNotFoundError):
        store.remove("me/f16:x")
    assert [e.name.display for e in store.list_models()] == ["counter:latest", "other/name:tag"]


def test_gc_removes_only_unreferenced_blobs_and_temps(
    store: Store, counter: Path, fixture_models: dict[str, Path]
) -> None:
    kept = stage(store, "counter", counter)
    gone = stage(store, "f16", fixture_models["counter-f16.gguf"], template="other")
    store.remove("f16")
    orphan = store.put_bytes(b"orphan")
    (store.tmp_dir / "blob-stale").write_bytes(b"partial")
    partial = store.blobs_dir / ("sha256-" + "e" * 64 + "-partial")  # Ollama's download
    partial.write_bytes(b"ollama")

    referenced = {d.digest for d in kept.descriptors()}
    expected = ({d.digest for d in gone.descriptors()} - referenced) | {orphan.digest}
    dry = store.gc(dry_run=True)
    assert {i.digest for i in dry if i.digest} == expected
    assert [i.path.name for i in dry if i.digest is None] == ["blob-stale"]
    assert all(i.path.exists() for i in dry)

    removed = store.gc()
    assert {i.digest for i in removed if i.digest} == expected
    assert not any(i.path.exists() for i in removed)
    assert all(store.has_blob(d) for d in referenced)
    assert partial.exists()
    assert store.verify() == []
    assert store.gc() == []


def test_gc_refuses_while_a_build_holds_the_store(store: Store, counter: Path) -> None:
    stage(store, "counter", counter)
    orphan = store.put_bytes(b"about to be referenced")
    with store.building(), pytest.raises(StoreBusyError, match="build"):
        store.gc()
    code = textwrap.dedent(
        f"""
        import sys, time
        from mfc.store import Store
        with Store({str(store.root)!r}).building():
            print("holding", flush=True)
            sys.stdin.read()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "holding\n"
        with pytest.raises(StoreBusyError):
            store.gc()
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=60)
    assert [i.digest for i in store.gc()] == [orphan.digest]


def test_gc_refuses_when_a_manifest_is_unreadable(store: Store, counter: Path) -> None:
    stage(store, "counter", counter)
    bad = store.root / "manifests/registry.ollama.ai/library/broken/latest"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    with pytest.raises(StoreError, match="broken/latest is unreadable"):
        store.gc()
    assert [p.kind for p in store.verify()] == ["manifest"]
    skipped: list = []
    assert [e.name.display for e in store.list_models(skipped)] == ["counter:latest"]
    assert [p.name.display for p in skipped if p.name] == ["broken:latest"]


def test_verify_detects_corrupt_and_missing_blobs(store: Store, counter: Path) -> None:
    m = stage(store, "counter", counter, license_text="MIT")
    stage(store, "copy", counter)
    assert store.verify() == [] and store.verify("counter") == []

    model = store.blob_path(m.layer(mt.MODEL).digest)  # type: ignore[union-attr]
    data = bytearray(model.read_bytes())
    data[1000] ^= 0xFF
    model.write_bytes(bytes(data))
    store.blob_path(m.layer(mt.LICENSE).digest).unlink()  # type: ignore[union-attr]
    orphan = store.put_bytes(b"orphan")
    store.blob_path(orphan.digest).write_bytes(b"tampered")

    problems = store.verify("counter")
    assert sorted(p.kind for p in problems) == ["corrupt", "missing"]
    corrupt = next(p for p in problems if p.kind == "corrupt")
    assert corrupt.name == parse_name("counter")
    assert "counter:latest" in corrupt.message and "hashes to sha256:" in corrupt.message

    everything = store.verify()
    kinds = sorted((p.kind, p.name.display if p.name else "-") for p in everything)
    assert kinds == [
        ("corrupt", "-"),  # the orphan
        ("corrupt", "copy:latest"),
        ("corrupt", "counter:latest"),
        ("missing", "counter:latest"),
    ]


def test_ollama_layout_store_is_listed(tmp_path: Path, counter: Path) -> None:
    """A store Ollama wrote (Go field order, `from` fields, indented) is read as is."""
    root = tmp_path / "ollama-models"
    blobs = root / "blobs"
    blobs.mkdir(parents=True)
    model = counter.read_bytes()
    config = b'{"model_format":"gguf","model_family":"llama","file_type":"F32"}'
    for data in (model, config):
        (blobs / ("sha256-" + hashlib.sha256(data).hexdigest())).write_bytes(data)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.MANIFEST,
        "config": {"mediaType": mt.CONFIG, "digest": _sha(config), "size": len(config)},
        "layers": [
            {"mediaType": mt.MODEL, "digest": _sha(model), "size": len(model), "from": "/x"}
        ],
    }
    data = json.dumps(manifest, indent=3).encode()
    path = root / "manifests/registry.ollama.ai/library/tiny/latest"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)

    store = Store.from_env({"MFC_MODELS": str(root)})
    (entry,) = store.list_models()
    assert entry.name.display == "tiny:latest"
    assert entry.digest == _sha(data)  # the ID Ollama shows
    assert entry.size == len(model) + len(config)
    assert store.verify() == []
    assert store.read_manifest("tiny").to_bytes() == data


def test_concurrent_writers_leave_a_consistent_store(
    store: Store, fixture_models: dict[str, Path]
) -> None:
    """Several processes put the same and different blobs and write manifests at once."""
    code = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        sys.path.insert(0, sys.argv[4])
        from conftest import stage
        from mfc.store import Store
        store = Store(sys.argv[1])
        for round in range(3):
            stage(store, f"w{sys.argv[2]}:r{round}", Path(sys.argv[3]), template=f"t{round}")
            stage(store, "shared", Path(sys.argv[3]), template=f"w{sys.argv[2]}")
        """
    )
    models = [fixture_models["counter-f32.gguf"], fixture_models["counter-f16.gguf"]]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                code,
                str(store.root),
                str(i),
                str(models[i % 2]),
                str(Path(__file__).parent),
            ]
        )
        for i in range(4)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0, 0]
    names = [e.name.display for e in store.list_models()]
    assert names == sorted([f"w{i}:r{r}" for i in range(4) for r in range(3)] + ["shared:latest"])
    assert store.verify() == []
    assert _leftovers(store) == []
    assert Manifest.from_bytes(store.manifest_path("shared").read_bytes()).layer(mt.TEMPLATE)


def test_killed_writer_leaves_no_blob_and_the_next_write_works(store: Store) -> None:
    """SIGKILL in the middle of a blob write: no blob, no manifest; gc clears the temp."""
    code = textwrap.dedent(
        """
        import sys, time
        from mfc.store import Store

        class Slow:
            calls = 0
            def readinto(self, buf):
                self.calls += 1
                if self.calls == 2:
                    print("halfway", flush=True)
                    time.sleep(600)
                buf[:6] = b"chunk!"
                return 6

        Store(sys.argv[1]).put_stream(Slow())
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(store.root)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "halfway\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert list(store.blobs_dir.iterdir()) == []
    assert len(_leftovers(store)) == 1
    assert store.list_models() == []
    (stale,) = store.gc()
    assert stale.digest is None
    assert _leftovers(store) == []
    assert store.put_bytes(b"chunk!") == (_sha(b"chunk!"), 6)


def test_adapter_scales_pair_by_position() -> None:
    """One adapter twice (two layers, one digest) keeps both scales, in order; a layer the
    config does not mention gets 1.0; a config entry with no layer is ignored."""
    from mfc.store import Descriptor, adapter_scales

    x, y = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    config_layer = Descriptor(mt.CONFIG, "sha256:" + "c" * 64, 2)
    layers = tuple(Descriptor(mt.ADAPTER, d, 1) for d in (x, y, x, x))
    manifest = Manifest(config_layer, layers)
    recorded = [
        {"digest": x, "scale": 0.5},
        {"digest": y, "scale": 2},
        {"digest": x, "scale": 0.25},
    ]
    config = {"mfc": {"adapters": [*recorded, {"digest": y, "scale": 9.0}]}}
    assert adapter_scales(config, manifest) == [(x, 0.5), (y, 2.0), (x, 0.25), (x, 1.0)]
    assert adapter_scales({}, manifest) == [(x, 1.0), (y, 1.0), (x, 1.0), (x, 1.0)]


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, MAP_CHUNK, MAP_CHUNK + 1, 3 * MAP_CHUNK - 7])
def test_mapped_copy_is_byte_identical_at_any_size(store: Store, tmp_path: Path, size: int) -> None:
    data = hashlib.shake_256(b"sizes").digest(size) if size else b""
    path = tmp_path / "in.bin"
    path.write_bytes(data)
    blob = store.put_file(path, link="copy")
    assert blob == (f"sha256:{hashlib.sha256(data).hexdigest()}", size)
    assert store.blob_path(blob.digest).read_bytes() == data


def test_a_source_changed_during_the_copy_is_refused(store: Store, tmp_path: Path) -> None:
    path, _ = _big(tmp_path)

    def touch(done: int) -> None:  # another program rewrites the input mid-copy
        if done < path.stat().st_size:
            os.utime(path, ns=(1, 1))

    with pytest.raises(SourceChangedError):
        store.put_file(path, link="copy", progress=touch)
    assert _leftovers(store) == []
    assert not list(store.blobs_dir.glob("sha256-*"))
