"""The builder on checked Modelfiles (ModelSpec, the front-end's contract) and real fixtures."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from build_helpers import make_spec, span, write_split

from mfc.build import Builder, BuildEvent
from mfc.build.lockfile import lock_path, read_lock
from mfc.diagnostics.diagnostic import DiagnosticError
from mfc.store import media_types as mt
from mfc.store.names import parse_name
from mfc.store.store import Store, read_config

RICH = dict(
    adapters=(("lora-shift.gguf", 0.5), ("lora-constant.gguf", 1.0)),
    params={"temperature": 0.0, "stop": ("[user]", "\n"), "num_ctx": 256, "top_p": 0.9},
    template="{{ .System }}{{ .Prompt }}",
    system="You count.",
    licenses=("MIT", "Apache-2.0"),
    messages=(("user", "abc"), ("assistant", "def")),
    build_args={"VERSION": "1"},
)


def errors_of(exc: pytest.ExceptionInfo[DiagnosticError]) -> list[tuple[str, int | None, str]]:
    return [(d.code, d.span.line if d.span else None, d.message) for d in exc.value.diagnostics]


def blob_json(store: Store, digest: str) -> object:
    return json.loads(store.read_blob(digest))


def test_reproducible_across_directories_times_and_umask(
    tmp_path: Path, fixture_models: dict[str, Path], snapshot
) -> None:
    results = []
    for i, umask in enumerate((0o022, 0o077)):
        project = tmp_path / f"checkout-{i}" / "deep" / "dir"
        project.mkdir(parents=True)
        for name in ("counter-f32.gguf", "lora-shift.gguf", "lora-constant.gguf"):
            shutil.copyfile(fixture_models[name], project / name)
            os.utime(project / name, ns=(i * 10**18 + 1, i * 10**18 + 1))
        old = os.umask(umask)
        try:
            store = Store(tmp_path / f"store-{i}")
            result = Builder(store).build_spec(make_spec("counter-f32.gguf", **RICH), project, "m")
        finally:
            os.umask(old)
        results.append((result.manifest.to_bytes(), store.read_blob(result.manifest.config.digest)))
    assert results[0] == results[1]
    manifest_bytes, config_bytes = results[0]
    assert json.loads(manifest_bytes) == snapshot(name="manifest")
    assert json.loads(config_bytes) == snapshot(name="config")


def test_layers_config_and_params(workspace: Path, store: Store) -> None:
    result = Builder(store).build_spec(make_spec("counter-f32.gguf", **RICH), workspace, "m:1")
    m = store.read_manifest("m:1")
    assert m.digest == result.manifest_digest
    assert [d.media_type for d in m.layers] == [
        mt.MODEL,
        mt.ADAPTER,
        mt.ADAPTER,
        mt.TEMPLATE,
        mt.SYSTEM,
        mt.PARAMS,
        mt.MESSAGES,
        mt.LICENSE,
        mt.LICENSE,
    ]
    assert blob_json(store, m.layer(mt.PARAMS).digest) == {
        "temperature": 0.0,
        "stop": ["[user]", "\n"],
        "num_ctx": 256,
        "top_p": 0.9,
    }
    assert blob_json(store, m.layer(mt.MESSAGES).digest) == [
        {"role": "user", "content": "abc"},
        {"role": "assistant", "content": "def"},
    ]
    assert [store.read_blob(d.digest) for d in m.layers_of(mt.LICENSE)] == [b"MIT", b"Apache-2.0"]
    config = read_config(store, m)
    assert config["model_format"] == "gguf"
    assert config["model_family"] == "llama"
    assert config["model_families"] == ["llama"]
    assert config["model_type"] == "169K"
    assert config["file_type"] == "F32"
    assert config["context_length"] == 512
    assert config["embedding_length"] == 128
    adapters = m.layers_of(mt.ADAPTER)
    assert config["mfc"]["adapters"] == [
        {"digest": adapters[0].digest, "scale": 0.5},
        {"digest": adapters[1].digest, "scale": 1.0},
    ]
    assert config["mfc"]["build_args"] == {"VERSION": "1"}
    assert m.layer(mt.MODEL).digest == "sha256:" + _sha256(workspace / "counter-f32.gguf")


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_inheritance(workspace: Path, store: Store) -> None:
    Builder(store).build_spec(make_spec("counter-f32.gguf", **RICH), workspace, "base")
    base = store.read_manifest("base")
    child_spec = make_spec(
        "base",
        adapters=(("lora-shift.gguf", 0.25),),
        params={"top_k": 5, "stop": ("END",)},
        system="You count faster.",
        licenses=("BSD",),
    )
    Builder(store).build_spec(child_spec, workspace, "child")
    child = store.read_manifest("child")
    # all base layers reused where the Modelfile says nothing
    assert child.layer(mt.MODEL) == base.layer(mt.MODEL)
    assert child.layer(mt.TEMPLATE) == base.layer(mt.TEMPLATE)
    assert child.layer(mt.MESSAGES) == base.layer(mt.MESSAGES)
    # SYSTEM replaced
    assert store.read_blob(child.layer(mt.SYSTEM).digest) == b"You count faster."
    # PARAMETERs merged per key, `stop` replaced whole
    assert blob_json(store, child.layer(mt.PARAMS).digest) == {
        "temperature": 0.0,
        "stop": ["END"],
        "num_ctx": 256,
        "top_p": 0.9,
        "top_k": 5,
    }
    # LICENSEs and adapters accumulate, in order, with their scales
    licenses = [store.read_blob(d.digest) for d in child.layers_of(mt.LICENSE)]
    assert licenses == [b"MIT", b"Apache-2.0", b"BSD"]
    scales = [a["scale"] for a in read_config(store, child)["mfc"]["adapters"]]
    assert scales == [0.5, 1.0, 0.25]
    assert child.layers_of(mt.ADAPTER)[:2] == base.layers_of(mt.ADAPTER)
    # build args are the child's own
    assert read_config(store, child)["mfc"]["build_args"] == {}

    # MESSAGEs replace the base's; TEMPLATE replaced only when given
    Builder(store).build_spec(
        make_spec("base", messages=(("user", "x"),), template="{{ .Prompt }}"), workspace, "c2"
    )
    c2 = store.read_manifest("c2")
    assert blob_json(store, c2.layer(mt.MESSAGES).digest) == [{"role": "user", "content": "x"}]
    assert store.read_blob(c2.layer(mt.TEMPLATE).digest) == b"{{ .Prompt }}"
    assert c2.layer(mt.PARAMS) == base.layer(mt.PARAMS)  # no PARAMETER: base layer as is


def test_adapter_errors_are_located(workspace: Path, store: Store) -> None:
    spec = make_spec(
        "counter-f32.gguf",
        adapters=(
            ("lora-shift.gguf", 1.0),
            ("lora-other-arch.gguf", 1.0),
            ("truncated.gguf", 1.0),
            ("not-gguf.gguf", 1.0),
            ("missing.gguf", 1.0),
            ("counter-f16.gguf", 1.0),
        ),
    )
    with pytest.raises(DiagnosticError) as exc:
        Builder(store).build_spec(spec, workspace, "bad")
    assert errors_of(exc) == [
        (
            "MF209",
            3,
            "ADAPTER `lora-other-arch.gguf` does not fit the base model: the adapter is for "
            "architecture `qwen2` but the base model is `llama`",
        ),
        ("MF201", 4, "ADAPTER `truncated.gguf` is a truncated GGUF file"),
        ("MF201", 5, "ADAPTER `not-gguf.gguf` is not a usable GGUF file"),
        ("MF205", 6, "ADAPTER `missing.gguf`: no such file"),
        (
            "MF209",
            7,
            "ADAPTER `counter-f16.gguf` does not fit the base model: not a LoRA adapter: its "
            "`general.type` is `model`",
        ),
    ]
    hints = [d.hint for d in exc.value.diagnostics]
    assert "the file is truncated" in hints[1]
    labels = [d.label for d in exc.value.diagnostics]
    assert (labels[1], labels[2]) == ("truncated", "not GGUF")
    assert "not a GGUF file" in hints[2]
    # nothing was named, and the rejected files never entered the store
    assert store.list_models() == []
    for name in ("lora-other-arch.gguf", "truncated.gguf", "not-gguf.gguf"):
        assert not store.has_blob("sha256:" + _sha256(workspace / name))


@pytest.mark.parametrize(
    ("base", "code", "message"),
    [
        ("not-gguf.gguf", "MF201", "FROM `not-gguf.gguf` is not a usable GGUF file"),
        ("truncated.gguf", "MF201", "FROM `truncated.gguf` is a truncated GGUF file"),
        ("lora-shift.gguf", "MF208", "FROM `lora-shift.gguf` is a LoRA adapter, not a model"),
        ("./nope.gguf", "MF205", "FROM `./nope.gguf`: no such file or directory"),
        ("../Modelfile", "MF205", "FROM `../Modelfile`: no such file or directory"),
    ],
)
def test_from_errors(workspace: Path, store: Store, base: str, code: str, message: str) -> None:
    with pytest.raises(DiagnosticError) as exc:
        Builder(store).build_spec(make_spec(base), workspace, "bad")
    assert errors_of(exc) == [(code, 1, message)]


def test_unresolvable_name_lists_every_place(workspace: Path, store: Store) -> None:
    with pytest.raises(DiagnosticError) as exc:
        Builder(store, registry_cache=workspace / "no-cache").build_spec(
            make_spec("llama3:8b"), workspace, "x"
        )
    (d,) = exc.value.diagnostics
    assert (d.code, d.message) == (
        "MF202",
        "FROM `llama3:8b` matches no file, Modelfile, local model or cached image",
    )
    assert d.hint is not None
    assert f"a file or directory {workspace / 'llama3:8b'}: does not exist" in d.hint
    assert f"the store {store.root}: no model `llama3:8b`" in d.hint
    assert f"the registry cache {workspace / 'no-cache'} (--registry-cache): does not exist" in (
        d.hint
    )


def test_invalid_name_and_tag(workspace: Path, store: Store) -> None:
    with pytest.raises(DiagnosticError) as exc:
        Builder(store).build_spec(make_spec("bad name!"), workspace, "x")
    assert errors_of(exc)[0][:2] == ("MF202", 1)
    with pytest.raises(DiagnosticError) as exc:
        Builder(store).build_spec(make_spec("counter-f32.gguf"), workspace, "../escape")
    assert errors_of(exc)[0][0] == "MF214"


def test_name_at_digest(workspace: Path, store: Store) -> None:
    built = Builder(store).build_spec(make_spec("counter-f32.gguf"), workspace, "pinned")
    ok = Builder(store).build_spec(
        make_spec(f"pinned@{built.manifest_digest}", system="s"), workspace, "p2"
    )
    assert ok.lock.inputs[0].kind == "model"
    assert ok.lock.inputs[0].digest == built.manifest_digest
    wrong = "sha256:" + "0" * 64
    with pytest.raises(DiagnosticError) as exc:
        Builder(store, registry_cache=workspace / "none").build_spec(
            make_spec(f"pinned@{wrong}"), workspace, "p3"
        )
    (d,) = exc.value.diagnostics
    assert d.code == "MF203"
    assert f"`pinned:latest` is {built.manifest_digest}" in (d.hint or "")


def test_from_own_tag_skips_the_store(workspace: Path, store: Store) -> None:
    """`FROM x` + `-t x` must not stack on the previous build of x (or digests drift)."""
    first = Builder(store).build_spec(make_spec("counter-f32.gguf"), workspace, "x")
    with pytest.raises(DiagnosticError) as exc:
        Builder(store, registry_cache=workspace / "none").build_spec(
            make_spec("x", system="again"), workspace, "x"
        )
    (d,) = exc.value.diagnostics
    assert d.code == "MF215"
    assert "skipped, `x:latest` is the model being built" in (d.hint or "")
    # pinned by digest it is allowed, and builds on the current x
    again = Builder(store).build_spec(
        make_spec(f"x@{first.manifest_digest}", system="again"), workspace, "x"
    )
    assert store.read_manifest("x").digest == again.manifest_digest != first.manifest_digest


def test_from_directory_and_split_set(workspace: Path, store: Store, tmp_path: Path) -> None:
    model_dir = workspace / "model"
    model_dir.mkdir()
    shutil.copyfile(workspace / "counter-q8_0.gguf", model_dir / "weights.gguf")
    r = Builder(store).build_spec(make_spec("model"), workspace, "d")
    assert r.config["file_type"] == "Q8_0"
    assert r.lock.inputs[0].path == "model/weights.gguf"

    shutil.copyfile(workspace / "counter-f16.gguf", model_dir / "other.gguf")
    with pytest.raises(DiagnosticError) as exc:
        Builder(store).build_spec(make_spec("model"), workspace, "d")
    assert errors_of(exc) == [("MF206", 1, "FROM directory `model` holds several GGUF files")]

    (workspace / "empty").mkdir()
    with pytest.raises(DiagnosticError) as exc:
        Builder(store).build_spec(make_spec("empty"), workspace, "d")
    assert errors_of(exc) == [("MF206", 1, "FROM directory `empty` holds no GGUF file")]

    shards = write_split(workspace / "split")
    r = Builder(store).build_spec(make_spec("split"), workspace, "s")
    models = r.manifest.layers_of(mt.MODEL)
    assert [d.digest for d in models] == ["sha256:" + _sha256(p) for p in shards]
    assert r.config["model_type"] == "224"
    r2 = Builder(store).build_spec(make_spec("split/m-00001-of-00003.gguf"), workspace, "s")
    assert r2.manifest_digest == r.manifest_digest
    shards[2].unlink()
    with pytest.raises(DiagnosticError) as exc:
        Builder(store).build_spec(make_spec("split/m-00001-of-00003.gguf"), workspace, "s")
    assert errors_of(exc)[0][:2] == ("MF207", 1)


def events(log: list[BuildEvent]) -> Callable[[BuildEvent], None]:
    """Record step and info events (byte counts are checked separately)."""

    def record(event: BuildEvent) -> None:
        if event.kind != "bytes":
            log.append(event)

    return record


def test_stat_cache_makes_rebuilds_read_nothing(workspace: Path, store: Store) -> None:
    spec = make_spec("counter-f32.gguf", adapters=(("lora-shift.gguf", 1.0),))
    cold: list[BuildEvent] = []
    first = Builder(store, progress=events(cold)).build_spec(spec, workspace, "m")
    assert [e.message for e in cold if e.message.startswith("storing")] == [
        "storing counter-f32.gguf (668.8 KiB)",
        "storing lora-shift.gguf (167.9 KiB)",
    ]
    # byte progress: each stored file reports reading up to its full size
    seen: list[BuildEvent] = []
    Builder(store, no_cache=True, progress=seen.append).build_spec(spec, workspace, "m")
    finals = {e.message: e for e in seen if e.kind == "bytes"}
    assert {m: (e.done, e.total) for m, e in finals.items()} == {
        "storing counter-f32.gguf": (684800, 684800),
        "storing lora-shift.gguf": (171968, 171968),
    }
    warm: list[BuildEvent] = []
    second = Builder(store, progress=events(warm)).build_spec(spec, workspace, "m")
    assert second.manifest_digest == first.manifest_digest
    assert not [e for e in warm if e.message.startswith("storing")]
    assert sum("unchanged" in e.message for e in warm) == 2

    # without the header cache the stored blob's header is read, the file is not copied again
    shutil.rmtree(store.root / ".mfc-cache" / "build" / "gguf")
    no_info: list[BuildEvent] = []
    Builder(store, progress=events(no_info)).build_spec(spec, workspace, "m")
    assert not [e for e in no_info if e.message.startswith("storing")]

    # --no-cache reads again (same result); a touched file is re-hashed
    nocache: list[BuildEvent] = []
    Builder(store, no_cache=True, progress=events(nocache)).build_spec(spec, workspace, "m")
    assert sum(e.message.startswith("storing") for e in nocache) == 2
    st = (workspace / "lora-shift.gguf").stat()
    os.utime(workspace / "lora-shift.gguf", ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    touched: list[BuildEvent] = []
    third = Builder(store, progress=events(touched)).build_spec(spec, workspace, "m")
    assert [e.message for e in touched if e.message.startswith("storing")] == [
        "storing lora-shift.gguf (167.9 KiB)"
    ]
    assert third.manifest_digest == first.manifest_digest

    # a cache hit whose blob was removed (gc) is not trusted
    store.remove("m")
    store.gc()
    again: list[BuildEvent] = []
    fourth = Builder(store, progress=events(again)).build_spec(spec, workspace, "m")
    assert fourth.manifest_digest == first.manifest_digest
    assert sum(e.message.startswith("storing") for e in again) == 2
    assert store.verify() == []


def test_changed_input_changes_digest(workspace: Path, store: Store) -> None:
    shutil.copyfile(workspace / "counter-f32.gguf", workspace / "model.gguf")
    a = Builder(store).build_spec(make_spec("model.gguf"), workspace, "m")
    shutil.copyfile(workspace / "counter-f16.gguf", workspace / "model.gguf")
    b = Builder(store).build_spec(make_spec("model.gguf"), workspace, "m")
    assert a.manifest_digest != b.manifest_digest
    assert b.config["file_type"] == "F16"


def test_hard_link_mode(workspace: Path, store: Store) -> None:
    r = Builder(store, link="hard").build_spec(make_spec("counter-f32.gguf"), workspace, "h")
    blob = store.blob_path(r.manifest.layer(mt.MODEL).digest)
    assert blob.stat().st_ino == (workspace / "counter-f32.gguf").stat().st_ino
    c = Builder(store, link="copy", no_cache=True).build_spec(
        make_spec("counter-f16.gguf"), workspace, "c"
    )
    blob = store.blob_path(c.manifest.layer(mt.MODEL).digest)
    assert blob.stat().st_ino != (workspace / "counter-f16.gguf").stat().st_ino


def test_lockfile_and_locked(workspace: Path, store: Store) -> None:
    lock_file = lock_path(workspace / "Modelfile")
    spec = make_spec(
        "counter-f32.gguf", adapters=(("lora-shift.gguf", 0.5),), build_args={"V": "1"}
    )
    with pytest.raises(DiagnosticError) as exc:
        Builder(store, locked=True).build_spec(spec, workspace, "m", lock_file=lock_file)
    assert errors_of(exc)[0][0] == "MF211"
    assert not lock_file.exists()

    r = Builder(store).build_spec(spec, workspace, "m", lock_file=lock_file)
    lock = read_lock(lock_file)
    assert lock == r.lock
    assert lock is not None and lock.manifest == r.manifest_digest
    assert [(i.instruction, i.ref, i.kind, i.path, i.size, i.scale) for i in lock.inputs] == [
        ("FROM", "counter-f32.gguf", "file", "counter-f32.gguf", 684800, None),
        ("ADAPTER", "lora-shift.gguf", "file", "lora-shift.gguf", 171968, 0.5),
    ]
    before = lock_file.read_bytes()
    same = Builder(store, locked=True).build_spec(spec, workspace, "m", lock_file=lock_file)
    assert same.manifest_digest == r.manifest_digest
    assert lock_file.read_bytes() == before
    log: list[BuildEvent] = []
    fresh_store = Store(workspace / "fresh-store")  # cold: hashed against the lock, then stored
    cold = Builder(fresh_store, locked=True, progress=events(log)).build_spec(
        spec, workspace, "m", lock_file=lock_file
    )
    assert cold.manifest_digest == r.manifest_digest
    assert "checking counter-f32.gguf against the lockfile" in [e.message for e in log]
    assert fresh_store.verify() == []

    # the FROM file changes: --locked refuses, names what drifted, and writes nothing
    original = (workspace / "counter-f32.gguf").read_bytes()
    shutil.copyfile(workspace / "counter-f16.gguf", workspace / "counter-f32.gguf")
    drifted = make_spec(
        "counter-f32.gguf", adapters=(("lora-shift.gguf", 1.0),), build_args={"V": "2"}
    )
    with pytest.raises(DiagnosticError) as exc:
        Builder(store, locked=True).build_spec(drifted, workspace, "m2", lock_file=lock_file)
    # one located error per drifted input: FROM on line 1, ADAPTER on line 2
    found = errors_of(exc)
    assert [(code, line) for code, line, _ in found] == [("MF210", 1), ("MF210", 2), ("MF210", 1)]
    assert found[0][2].startswith(
        f"--locked: FROM counter-f32.gguf: locked {lock.inputs[0].digest}, now resolves to"
    )
    assert found[1][2] == "--locked: ADAPTER lora-shift.gguf: scale locked 0.5, now 1.0"
    assert found[2][2] == "--locked: build arg V: locked `1`, now `2`"
    assert exc.value.diagnostics[0].hint == "rebuild without --locked to update Modelfile.lock"
    assert lock_file.read_bytes() == before
    # the drifted file was hashed against the lock, never copied into the store
    assert not store.has_blob("sha256:" + _sha256(workspace / "counter-f32.gguf"))
    assert list(store.tmp_dir.iterdir()) == []
    with pytest.raises(Exception, match="not found"):
        store.read_manifest("m2")

    # same inputs, different Modelfile text: the image drifts
    (workspace / "counter-f32.gguf").write_bytes(original)
    with pytest.raises(DiagnosticError) as exc:
        Builder(store, locked=True).build_spec(
            make_spec(
                "counter-f32.gguf",
                adapters=(("lora-shift.gguf", 0.5),),
                build_args={"V": "1"},
                system="new",
            ),
            workspace,
            "m2",
            lock_file=lock_file,
        )
    (d,) = exc.value.diagnostics
    assert d.message.startswith(f"--locked: the image: locked {lock.manifest}, this build gives")

    # without --locked the build updates the lock
    shutil.copyfile(workspace / "counter-f16.gguf", workspace / "counter-f32.gguf")
    r3 = Builder(store).build_spec(drifted, workspace, "m", lock_file=lock_file)
    assert read_lock(lock_file) == r3.lock != lock


def test_quantize(workspace: Path, store: Store) -> None:
    spec = make_spec("counter-f16.gguf", system="q")
    log: list[BuildEvent] = []
    r = Builder(store, quantize="q8_0", progress=events(log)).build_spec(spec, workspace, "q")
    assert "quantizing to Q8_0" in [e.message for e in log]
    assert r.config["file_type"] == "Q8_0"
    assert r.lock.quantize == "Q8_0"
    model = r.manifest.layer(mt.MODEL)
    from mfc.gguf_meta import inspect

    info = inspect(store.blob_path(model.digest))
    assert info.file_type == "Q8_0"
    assert {t.type for t in info.tensors if len(t.shape) == 2} == {"Q8_0"}

    # cached by (input digest, type): no second quantization, same digest
    log2: list[BuildEvent] = []
    r2 = Builder(store, quantize="Q8_0", progress=events(log2)).build_spec(spec, workspace, "q")
    assert "quantizing to Q8_0" not in [e.message for e in log2]
    assert r2.manifest_digest == r.manifest_digest

    # deterministic: a fresh store quantizes to the same bytes
    fresh = Store(workspace / "fresh-store")
    r3 = Builder(fresh, quantize="Q8_0").build_spec(spec, workspace, "q")
    assert r3.manifest_digest == r.manifest_digest

    with pytest.raises(DiagnosticError) as exc:
        Builder(store, quantize="Q9_X").build_spec(spec, workspace, "q")
    assert errors_of(exc)[0][:2] == ("MF212", 1)
    with pytest.raises(DiagnosticError) as exc:
        Builder(store, quantize="Q4_K_M").build_spec(make_spec("counter-q8_0.gguf"), workspace, "q")
    assert "only F32/F16/BF16 models can be quantized" in errors_of(exc)[0][2]


def test_quantize_offers_only_the_types_the_installed_llama_cpp_takes(
    workspace: Path, store: Store
) -> None:
    """llama-cpp-python may define a type its library rejects (NVFP4: "invalid output file
    type 39"); the probe asks the library, and only what it takes is offered."""
    from mfc.build.quantize import quant_types, supported_types

    supported = supported_types()
    assert supported is not None and {"Q8_0", "Q4_K_M", "F16"} <= set(supported)
    spec = make_spec("counter-f32.gguf")
    with pytest.raises(DiagnosticError) as exc:
        Builder(store, quantize="Q9_X").build_spec(spec, workspace, "q")
    assert exc.value.diagnostics[0].hint == "use one of " + ", ".join(supported)

    rejected = [t for t in quant_types() if t not in supported]
    if not rejected:
        pytest.skip("this llama.cpp takes every type gguf-py knows")
    with pytest.raises(DiagnosticError) as exc:
        Builder(store, quantize=rejected[0].lower()).build_spec(spec, workspace, "q")
    (diag,) = exc.value.diagnostics
    assert (diag.code, diag.message) == (
        "MF212",
        f"--quantize {rejected[0]}: the installed llama.cpp cannot quantize to {rejected[0]}",
    )
    assert rejected[0] not in (diag.hint or "").split(", ")
    assert store.list_models() == []


def test_untagged_build_writes_no_manifest(workspace: Path, store: Store) -> None:
    r = Builder(store).build_spec(make_spec("counter-f32.gguf"), workspace, None)
    assert r.name is None
    assert store.list_models() == []
    assert store.has_blob(r.manifest.config.digest)


def test_draft_is_a_warning(workspace: Path, store: Store) -> None:
    import dataclasses

    from mfc.modelfile.spec import BaseRef

    spec = dataclasses.replace(
        make_spec("counter-f32.gguf"), draft=BaseRef("counter-q8_0.gguf", span(2))
    )
    r = Builder(store).build_spec(spec, workspace, "d")
    assert [(d.code, d.severity.value) for d in r.diagnostics] == [("MF217", "warning")]
    assert parse_name("d").matches(r.name)  # type: ignore[arg-type]


def test_from_a_lone_shard_is_refused_before_copying(workspace: Path, store: Store) -> None:
    """A shard renamed out of its set's naming would build a model missing its other shards."""
    shards = write_split(workspace / "split")
    lone = workspace / "weights.gguf"
    shutil.copyfile(shards[1], lone)
    spec = make_spec("weights.gguf")
    with pytest.raises(DiagnosticError) as exc:
        Builder(store).build_spec(spec, workspace, "lone")
    assert errors_of(exc) == [
        ("MF207", 1, "FROM `weights.gguf` is one shard of a split GGUF set (shard 2 of 3)")
    ]
    assert exc.value.diagnostics[0].span == spec.base.span
    assert "m-00001-of-00003" not in (exc.value.diagnostics[0].hint or "")
    assert "-00001-of-00003.gguf" in (exc.value.diagnostics[0].hint or "")
    assert not store.has_blob("sha256:" + _sha256(lone))
