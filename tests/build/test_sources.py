"""FROM resolution (the resolver table), file inputs (real paths, only referenced bytes
stored) and the one path-or-name rule shared by the checker and the builder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from build_helpers import make_spec

from mfc.build import Builder
from mfc.build.locate import find_registry_cache
from mfc.build.sources import RESOLVERS
from mfc.diagnostics.diagnostic import DiagnosticError
from mfc.modelfile.check import check_text
from mfc.modelfile.refs import looks_like_path
from mfc.store import media_types as mt
from mfc.store.store import Store

REPO = Path(__file__).resolve().parents[2]


def _digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_resolvers_are_tried_in_the_documented_order() -> None:
    """docs/build.md "How FROM resolves" lists this order; the registry (issue 11) goes last."""
    assert [name for name, _ in RESOLVERS] == [
        "file",
        "modelfile",
        "path only",
        "store",
        "registry cache",
        "registry",
    ]


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("./m.gguf", True),
        ("../m", True),
        ("/abs/m", True),
        ("~/m", True),
        (".\\m", True),
        ("C:\\models\\m", True),
        ("C:/models/m", True),
        (".", True),
        ("m.gguf", True),
        ("M.GGUF", True),
        ("w.safetensors", True),
        ("pytorch_model.bin", True),
        ("Modelfile", True),
        ("base.modelfile", True),
        ("dir/prod.Modelfile", True),
        ("llama3", False),
        ("llama3.2", False),
        ("me/model:1.0", False),
        ("hf.co/user/repo:Q4_K_M", False),
        ("counter@sha256:" + "a" * 64, False),
        ("safetensors", False),
    ],
)
def test_looks_like_path(value: str, path: bool) -> None:
    assert looks_like_path(value) is path


def test_checker_and_builder_agree_on_a_missing_safetensors_path(
    workspace: Path, store: Store
) -> None:
    """`FROM w.safetensors` was a path to the checker (MF110) and a name to the builder
    (MF202, searching the store and registry cache); now it is a path to both."""
    result = check_text("FROM w.safetensors\n", "Modelfile", base_dir=workspace)
    assert [d.code for d in result.diagnostics] == ["MF110"]
    with pytest.raises(DiagnosticError) as exc:
        Builder(store, registry_cache=workspace / "none").build_spec(
            make_spec("w.safetensors"), workspace, "x"
        )
    (diag,) = exc.value.diagnostics
    assert (diag.code, diag.message) == ("MF205", "FROM `w.safetensors`: no such file or directory")


def test_an_existing_safetensors_file_is_not_gguf(workspace: Path, store: Store) -> None:
    (workspace / "w.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(DiagnosticError) as exc:
        Builder(store).build_spec(make_spec("w.safetensors"), workspace, "x")
    (diag,) = exc.value.diagnostics
    assert (diag.code, diag.label) == ("MF201", "not GGUF")


@pytest.mark.parametrize("link", ["auto", "copy", "hard"])
def test_symlinks_to_a_blob_of_the_same_store(workspace: Path, store: Store, link: str) -> None:
    """`FROM ./m.gguf` where m.gguf is a relative symlink to a blob of this store failed
    with ENOENT on `.mfc-tmp/link-…` (the symlink itself was hard-linked); inputs are now
    resolved to their real path once, so relative, absolute and chained links all build."""
    base = Builder(store).build_spec(make_spec("counter-f32.gguf"), workspace, "base")
    digest = base.manifest.layer(mt.MODEL).digest
    blob = store.blob_path(digest)
    links = workspace / "links"
    links.mkdir()
    (links / "rel.gguf").symlink_to(os.path.relpath(blob, links))
    (links / "abs.gguf").symlink_to(blob)
    (links / "chain.gguf").symlink_to("rel.gguf")
    (workspace / "outside.gguf").symlink_to(Path("links") / "chain.gguf")
    for i, ref in enumerate(
        ["links/rel.gguf", "links/abs.gguf", "links/chain.gguf", "outside.gguf"]
    ):
        r = Builder(store, link=link).build_spec(make_spec(ref), workspace, f"s{i}")  # type: ignore[arg-type]
        assert r.manifest.layer(mt.MODEL).digest == digest
        assert r.lock.inputs[0].path == ref  # the lock keeps the path as written
    assert blob.is_file() and not blob.is_symlink()
    assert store.gc(dry_run=True) == []
    assert not any(store.tmp_dir.iterdir()) if store.tmp_dir.exists() else True


def test_symlink_to_a_file_outside_the_store(workspace: Path, store: Store) -> None:
    (workspace / "sub").mkdir()
    (workspace / "sub" / "m.gguf").symlink_to("../counter-f32.gguf")
    r = Builder(store, link="hard").build_spec(make_spec("sub/m.gguf"), workspace, "m")
    assert r.manifest.layer(mt.MODEL).digest == _digest(workspace / "counter-f32.gguf")


def test_quantize_reads_the_input_where_it_lies(workspace: Path, store: Store) -> None:
    """`--quantize` of an f16 file stored the f16 input, which no manifest references (gc
    listed it). The input is hashed for the quantize cache and the lock, never stored."""
    f16 = workspace / "counter-f16.gguf"
    spec = make_spec("counter-f16.gguf")
    r = Builder(store, quantize="q8_0").build_spec(spec, workspace, "q")
    assert r.config["file_type"] == "Q8_0"
    assert r.lock.inputs[0].digest == _digest(f16)  # the lock still names the input
    assert not store.has_blob(_digest(f16))
    assert store.gc(dry_run=True) == []

    # warm: the stat cache knows the input's digest, the quantize cache the output
    again = Builder(store, quantize="q8_0").build_spec(spec, workspace, "q")
    assert again.manifest_digest == r.manifest_digest
    assert not store.has_blob(_digest(f16))
    # --locked with the lock the build wrote: same image, nothing stored but the output
    lock_file = workspace / "Modelfile.lock"
    Builder(store, quantize="q8_0").build_spec(spec, workspace, "q", lock_file=lock_file)
    locked = Builder(store, quantize="q8_0", locked=True).build_spec(
        spec, workspace, "q", lock_file=lock_file
    )
    assert locked.manifest_digest == r.manifest_digest
    assert store.gc(dry_run=True) == []

    # without --quantize the same file is a model layer: now it is stored
    plain = Builder(store).build_spec(spec, workspace, "f16")
    assert plain.manifest.layer(mt.MODEL).digest == _digest(f16)
    assert store.has_blob(_digest(f16))


def test_quantize_from_a_stored_f16_model(workspace: Path, store: Store) -> None:
    """FROM a store model that is f16: its blob is stored already (and referenced)."""
    Builder(store).build_spec(make_spec("counter-f16.gguf"), workspace, "base-f16")
    r = Builder(store, quantize="q8_0").build_spec(make_spec("base-f16"), workspace, "q")
    assert r.config["file_type"] == "Q8_0"
    assert store.has_blob(_digest(workspace / "counter-f16.gguf"))
    assert store.gc(dry_run=True) == []


def test_quantize_refused_stores_nothing(workspace: Path, store: Store) -> None:
    with pytest.raises(DiagnosticError) as exc:
        Builder(store, quantize="Q4_K_M").build_spec(make_spec("counter-q8_0.gguf"), workspace, "q")
    assert exc.value.diagnostics[0].code == "MF212"
    assert not store.has_blob(_digest(workspace / "counter-q8_0.gguf"))


def test_registry_cache_search_never_looks_at_the_mfc_checkout(tmp_path: Path) -> None:
    """Library code does not reach into the source checkout: outside a project with a
    registry_cache/ (and without --registry-cache or $MFC_REGISTRY_CACHE) there is none,
    even though this checkout has one."""
    assert (REPO / "registry_cache" / "oci-layout").is_file()
    found, how = find_registry_cache(None, tmp_path, environ={}, cwd=tmp_path)
    assert found is None
    assert "MFC_REGISTRY_CACHE" in how
    # the project-local walk-up is how `make demo` (run from the repo root) finds it
    found, how = find_registry_cache(None, REPO / "examples" / "counter", environ={}, cwd=tmp_path)
    assert found == REPO / "registry_cache"
    assert how.startswith("found upward from")


def test_quantize_refuses_an_input_changed_while_read(
    workspace: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The input's hash names the quantized result in the caches: if the file changes
    between the hash and the quantizer, the build stops instead of caching a wrong pair."""
    import shutil

    import mfc.build.quantize as quantize_mod

    source = workspace / "counter-f16.gguf"

    def quantize_while_edited(src: Path, dst: Path, qtype: str) -> None:
        os.utime(source, ns=(1, 1))  # someone writes to it meanwhile
        shutil.copyfile(workspace / "counter-q8_0.gguf", dst)

    monkeypatch.setattr(quantize_mod, "quantize", quantize_while_edited)
    with pytest.raises(DiagnosticError) as exc:
        Builder(store, quantize="q8_0").build_spec(make_spec("counter-f16.gguf"), workspace, "q")
    (diag,) = exc.value.diagnostics
    assert (diag.code, diag.message) == (
        "MF213",
        "--quantize Q8_0: counter-f16.gguf changed while it was read",
    )
    assert store.list_models() == []
    assert store.gc(dry_run=True) == []


def test_quantize_a_registry_cache_image_leaves_its_model_in_the_cache(
    workspace: Path, store: Store, tmp_path: Path
) -> None:
    """`FROM counter:f16` + `--quantize q8_0`: the f16 model layer is quantized from the
    registry cache's blob file (verified by its hash), not imported into the store."""
    import json
    import shutil

    cache = tmp_path / "registry_cache"
    shutil.copytree(REPO / "registry_cache", cache)
    r = Builder(store, quantize="q8_0", registry_cache=cache).build_spec(
        make_spec("counter:f16"), workspace, "q"
    )
    assert r.config["file_type"] == "Q8_0"
    index = json.loads((cache / "index.json").read_text())
    assert index  # the image is there, and its f16 model is not in the store:
    assert not store.has_blob(_digest(workspace / "counter-f16.gguf"))
    assert store.gc(dry_run=True) == []
    again = Builder(store, quantize="q8_0", registry_cache=cache).build_spec(
        make_spec("counter:f16"), workspace, "q"
    )
    assert again.manifest_digest == r.manifest_digest
    # without --quantize the image is imported whole
    whole = Builder(store, registry_cache=cache).build_spec(
        make_spec("counter:f16"), workspace, "f"
    )
    assert store.has_blob(whole.manifest.layer(mt.MODEL).digest)


def test_a_damaged_registry_cache_blob_is_not_quantized(
    workspace: Path, store: Store, tmp_path: Path
) -> None:
    import shutil

    cache = tmp_path / "registry_cache"
    shutil.copytree(REPO / "registry_cache", cache)
    model = _digest(workspace / "counter-f16.gguf")
    blob = cache / "blobs" / "sha256" / model.removeprefix("sha256:")
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    with pytest.raises(DiagnosticError) as exc:
        Builder(store, quantize="q8_0", registry_cache=cache).build_spec(
            make_spec("counter:f16"), workspace, "q"
        )
    (diag,) = exc.value.diagnostics
    assert diag.code == "MF216" or "does not match its digest" in (diag.hint or "")


def test_only_referenced_blobs_enter_the_store(
    workspace: Path, store: Store, tmp_path: Path
) -> None:
    """A registry-cache base's config and a dependency Modelfile's config are read as
    values, not stored: after a build graph, `mfc gc --dry-run` lists nothing."""
    import shutil

    cache = tmp_path / "registry_cache"
    shutil.copytree(REPO / "registry_cache", cache)
    (workspace / "base.modelfile").write_text("FROM counter\nSYSTEM base\n")
    (workspace / "Modelfile").write_text("FROM ./base.modelfile\nPARAMETER temperature 0\n")
    from mfc.build import build_modelfile

    r = build_modelfile(workspace, "top", store=store, registry_cache=cache)
    assert r.config["model_family"] == "llama"
    assert store.gc(dry_run=True) == []
