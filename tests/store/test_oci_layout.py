"""save/load: deterministic OCI layouts, verified imports, the read-only view the builder uses."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mfc.store import Store, StoreError, parse_name
from mfc.store.oci_layout import LayoutError, OciLayout, load, save

from .conftest import stage


def _models(store: Store, fixture_models: dict[str, Path]) -> None:
    stage(store, "counter", fixture_models["counter-f32.gguf"], params={"temperature": 0.5})
    stage(store, "me/counter:f16", fixture_models["counter-f16.gguf"], license_text="MIT")
    stage(
        store,
        "with-adapter",
        fixture_models["counter-f32.gguf"],
        adapters=((fixture_models["lora-shift.gguf"], 0.5),),
    )


def _sha_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tarballs_are_byte_identical_across_stores_and_times(
    tmp_path: Path, fixture_models: dict[str, Path]
) -> None:
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    _models(a, fixture_models)
    _models(b, fixture_models)
    for blob in (b.root / "blobs").iterdir():  # different mtimes, modes on the second store
        os.utime(blob, (1_000_000, 1_000_000))
    os.utime(b.manifest_path("counter"), (5, 5))
    names = ["counter", "me/counter:f16", "with-adapter"]
    save(a, names, tar_path=tmp_path / "a.tar")
    save(b, list(reversed(names)), tar_path=tmp_path / "b.tar")
    assert _sha_file(tmp_path / "a.tar") == _sha_file(tmp_path / "b.tar")

    with tarfile.open(tmp_path / "a.tar") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    assert {m.mode for m in members if m.isfile()} == {0o644}
    assert not any(m.pax_headers for m in members)
    assert members[-2].name == "index.json" and members[-1].name == "oci-layout"


def test_save_load_round_trip(tmp_path: Path, fixture_models: dict[str, Path]) -> None:
    src = Store(tmp_path / "src")
    _models(src, fixture_models)
    save(src, ["counter", "me/counter:f16", "with-adapter"], tar_path=tmp_path / "m.tar")
    dst = Store(tmp_path / "dst")
    loaded = load(dst, tmp_path / "m.tar")
    assert sorted(e.name.display for e in loaded) == [
        "counter:latest",
        "me/counter:f16",
        "with-adapter:latest",
    ]
    assert [(e.name, e.digest) for e in dst.list_models()] == [
        (e.name, e.digest) for e in src.list_models()
    ]
    assert dst.verify() == []
    # Saving the loaded store again gives the same bytes.
    save(dst, ["counter", "me/counter:f16", "with-adapter"], tar_path=tmp_path / "again.tar")
    assert _sha_file(tmp_path / "again.tar") == _sha_file(tmp_path / "m.tar")


def test_layout_directory_and_find(tmp_path: Path, fixture_models: dict[str, Path]) -> None:
    store = Store(tmp_path / "s")
    _models(store, fixture_models)
    layout_dir = tmp_path / "layout"
    save(store, ["counter", "me/counter:f16"], layout_dir=layout_dir)
    assert json.loads((layout_dir / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout_dir / "index.json").read_text())
    refs = [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]
    assert refs == ["counter:latest", "me/counter:f16"]
    for path in (layout_dir / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name

    with OciLayout(layout_dir) as layout:
        assert layout.names() == [parse_name("counter"), parse_name("me/counter:f16")]
        found = layout.find("ME/Counter:F16")
        assert found is not None
        manifest, open_blob = found
        assert manifest == store.read_manifest("me/counter:f16")
        with open_blob(manifest.config.digest) as f:
            assert json.loads(f.read())["model_family"] == "llama"
        assert layout.find("absent") is None
        assert layout.blob_path(manifest.config.digest) is not None

    # Re-saving fewer models into the same directory drops the blobs no longer needed.
    save(store, ["counter"], layout_dir=layout_dir)
    wanted = {d.digest[7:] for d in store.read_manifest("counter").descriptors()}
    wanted.add(store.read_manifest("counter").digest[7:])
    assert {p.name for p in (layout_dir / "blobs" / "sha256").iterdir()} == wanted

    loaded = Store(tmp_path / "from-dir")
    assert [e.name.display for e in load(loaded, layout_dir)] == ["counter:latest"]
    assert loaded.verify() == []


def _rewrite_tar(src: Path, dst: Path, change: dict[str, bytes]) -> None:
    with tarfile.open(src) as tin, tarfile.open(dst, "w", format=tarfile.GNU_FORMAT) as tout:
        for member in tin.getmembers():
            data = tin.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name in change:
                data = change[member.name]
                member.size = len(data)
            tout.addfile(member, io.BytesIO(data) if data is not None else None)


def test_load_rejects_a_tampered_layer(tmp_path: Path, fixture_models: dict[str, Path]) -> None:
    src = Store(tmp_path / "src")
    m = stage(src, "counter", fixture_models["counter-f32.gguf"], template="original")
    save(src, ["counter"], tar_path=tmp_path / "ok.tar")
    template = m.layers[1]
    member = "blobs/sha256/" + template.digest[7:]
    _rewrite_tar(tmp_path / "ok.tar", tmp_path / "bad.tar", {member: b"tampered"})
    dst = Store(tmp_path / "dst")
    with pytest.raises(LayoutError, match=f"{template.digest}.*hashes to sha256:"):
        load(dst, tmp_path / "bad.tar")
    assert dst.list_models() == []
    assert not dst.has_blob(template.digest)


def test_load_rejects_a_tampered_manifest(tmp_path: Path, fixture_models: dict[str, Path]) -> None:
    src = Store(tmp_path / "src")
    m = stage(src, "counter", fixture_models["counter-f32.gguf"])
    save(src, ["counter"], tar_path=tmp_path / "ok.tar")
    member = "blobs/sha256/" + m.digest[7:]
    forged = m.to_bytes().replace(b'"schemaVersion":2', b'"schemaVersion":2 ')
    _rewrite_tar(tmp_path / "ok.tar", tmp_path / "bad.tar", {member: forged})
    dst = Store(tmp_path / "dst")
    with pytest.raises(LayoutError, match="does not match its digest"):
        load(dst, tmp_path / "bad.tar")
    assert dst.list_models() == []


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"oci-layout": b"{}"}, "imageLayoutVersion"),
        ({"index.json": b"[1,"}, "not valid JSON"),
        ({"index.json": b'{"manifests": {}}'}, "no `manifests` array"),
        (
            {
                "index.json": b'{"manifests": [{"digest": "sha256:'
                + b"0" * 64
                + b'", "annotations": {"org.opencontainers.image.ref.name": "../x"}}]}'
            },
            "invalid model name",
        ),
        (
            {
                "index.json": b'{"manifests": [{"digest": "sha256:'
                + b"0" * 64
                + b'", "annotations": {"org.opencontainers.image.ref.name": "x"}}]}'
            },
            "manifest blob sha256:0000.* is missing",
        ),
    ],
)
def test_load_rejects_malformed_layouts(
    tmp_path: Path, fixture_models: dict[str, Path], change: dict[str, bytes], words: str
) -> None:
    src = Store(tmp_path / "src")
    stage(src, "counter", fixture_models["counter-f32.gguf"])
    save(src, ["counter"], tar_path=tmp_path / "ok.tar")
    _rewrite_tar(tmp_path / "ok.tar", tmp_path / "bad.tar", change)
    with pytest.raises(LayoutError, match=words):
        load(Store(tmp_path / "dst"), tmp_path / "bad.tar")


def test_not_a_layout(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(LayoutError, match="not a readable tar archive"):
        load(Store(tmp_path / "s"), junk)
    with pytest.raises(LayoutError, match="no such OCI layout"):
        OciLayout(tmp_path / "missing")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file").write_text("mine")
    store = Store(tmp_path / "s")
    stage(store, "x", junk, template=None)
    with pytest.raises(LayoutError, match="not empty and not an OCI layout"):
        save(store, ["x"], layout_dir=tmp_path / "full")


@pytest.fixture(scope="module")
def small_tar(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    root = tmp_path_factory.mktemp("small")
    store = Store(root / "s")
    model = root / "model.gguf"
    model.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    stage(store, "tiny", model, params={"temperature": 0.5}, license_text="MIT")
    save(store, ["tiny"], tar_path=root / "tiny.tar")
    return (root / "tiny.tar").read_bytes()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), min_size=1, max_size=6))
def test_load_of_a_damaged_tarball_fails_cleanly_or_loads_verified_models(
    small_tar: bytes, tmp_path_factory: pytest.TempPathFactory, flips: list[tuple[int, int]]
) -> None:
    """Damage anywhere: either a LayoutError/StoreError, or models whose blobs all verify."""
    data = bytearray(small_tar)
    for pos, xor in flips:
        data[pos % len(data)] ^= xor
    root = tmp_path_factory.mktemp("damaged")
    tar = root / "damaged.tar"
    tar.write_bytes(bytes(data))
    store = Store(root / "s")
    with contextlib.suppress(StoreError):
        load(store, tar)
    assert store.verify() == []
    for entry in store.list_models():
        assert entry.name.display == "tiny:latest"
