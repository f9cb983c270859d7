"""Projector layers in the build: FROM lines that merge, FROM a directory, FROM a name; the
checks against libmtmd and the text model (located errors, nothing stored); the lockfile."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mfc.build import build_modelfile
from mfc.build.lockfile import read_lock
from mfc.cli.main import cli
from mfc.diagnostics.diagnostic import DiagnosticError
from mfc.store import media_types as mt
from mfc.store.image import read_image
from mfc.store.store import Store

MERGED = "FROM ./counter-f16.gguf\nFROM ./counter-f32.gguf\n"


def mfc(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def modelfile(workspace: Path, text: str, name: str = "Modelfile") -> Path:
    path = workspace / name
    path.write_text(text)
    return path


def layer_types(store: Store, tag: str) -> list[str]:
    return [d.media_type for d in store.read_manifest(tag).layers]


def blobs(store: Store) -> list[Path]:
    return sorted(store.blobs_dir.glob("*")) if store.blobs_dir.exists() else []


def test_model_and_projector_on_two_from_lines(workspace: Path, store: Store) -> None:
    mf = modelfile(workspace, "FROM ./counter-f32.gguf\nFROM ./vision-proj.gguf\nSYSTEM hi\n")
    result = build_modelfile(mf, "vis", store=store)
    assert [d.code for d in result.diagnostics] == []  # no MF107: a projector joins the model
    assert layer_types(store, "vis") == [mt.MODEL, mt.PROJECTOR, mt.SYSTEM]
    projector = store.read_manifest("vis").layer(mt.PROJECTOR)
    assert projector is not None
    assert (
        store.blob_path(projector.digest).read_bytes()
        == (workspace / "vision-proj.gguf").read_bytes()
    )
    view = read_image(store, "vis")
    assert "vision" in view.capabilities()
    assert view.projectors == (store.blob_path(projector.digest),)

    # either order is the same model: the header says which file is the projector
    swapped = modelfile(
        workspace, "FROM ./vision-proj.gguf\nFROM ./counter-f32.gguf\nSYSTEM hi\n", "Swapped"
    )
    assert build_modelfile(swapped, "vis2", store=store).manifest_digest == result.manifest_digest


def test_lockfile_records_the_projector(workspace: Path, store: Store) -> None:
    mf = modelfile(workspace, "FROM ./counter-f32.gguf\nFROM ./vision-proj.gguf\n")
    result = build_modelfile(mf, "vis", store=store)
    lock = read_lock(workspace / "Modelfile.lock")
    assert lock is not None
    projector = store.read_manifest("vis").layer(mt.PROJECTOR)
    assert projector is not None
    assert [(i.instruction, i.ref, i.kind, i.path) for i in lock.inputs] == [
        ("FROM", "./counter-f32.gguf", "file", "counter-f32.gguf"),
        ("FROM", "./vision-proj.gguf", "projector", "vision-proj.gguf"),
    ]
    assert lock.inputs[1].digest == projector.digest
    assert lock.manifest == result.manifest_digest

    # --locked: unchanged inputs build; a changed projector is MF210 on its own line
    assert mfc("build", "--locked", "-t", "vis", str(workspace)).exit_code == 0
    from build_helpers import write_projector

    write_projector(workspace / "vision-proj.gguf")  # another projector that fits
    drifted = mfc("build", "--locked", "-t", "vis", str(workspace))
    assert drifted.exit_code == 1
    assert f"{mf}:2:1: error[MF210]: --locked: FROM ./vision-proj.gguf: locked" in drifted.stderr


def test_from_a_directory_holding_model_and_projector(workspace: Path, store: Store) -> None:
    both = workspace / "llava"
    both.mkdir()
    for name in ("counter-f32.gguf", "vision-proj.gguf"):
        shutil.copyfile(workspace / name, both / name)
    from_dir = build_modelfile(modelfile(workspace, "FROM ./llava\n"), "dir", store=store)
    assert layer_types(store, "dir") == [mt.MODEL, mt.PROJECTOR]
    two_lines = modelfile(workspace, "FROM ./counter-f32.gguf\nFROM ./vision-proj.gguf\n", "Two")
    assert build_modelfile(two_lines, "two", store=store).manifest_digest == (
        from_dir.manifest_digest
    )
    lock = read_lock(workspace / "Modelfile.lock")
    assert lock is not None
    assert [(i.ref, i.kind, i.path) for i in lock.inputs] == [
        ("./llava", "file", "llava/counter-f32.gguf"),
        ("./llava", "projector", "llava/vision-proj.gguf"),
    ]


def test_from_name_inherits_the_projector(workspace: Path, store: Store) -> None:
    base = modelfile(workspace, "FROM ./counter-f32.gguf\nFROM ./vision-proj.gguf\n")
    build_modelfile(base, "vis", store=store)
    child = modelfile(workspace, "FROM vis\nSYSTEM look closely\n", "Child")
    build_modelfile(child, "vis-child", store=store)
    assert layer_types(store, "vis-child") == [mt.MODEL, mt.PROJECTOR, mt.SYSTEM]
    parent, built = store.read_manifest("vis"), store.read_manifest("vis-child")
    assert built.layer(mt.PROJECTOR) == parent.layer(mt.PROJECTOR)
    assert "vision" in read_image(store, "vis-child").capabilities()


def test_builds_are_reproducible(workspace: Path, tmp_path: Path) -> None:
    """The same inputs give the same digest in any store, however the projector is named."""
    text = "FROM ./counter-f32.gguf\nFROM ./vision-proj.gguf\nPARAMETER temperature 0\n"
    digests = set()
    for i in range(2):
        store = Store(tmp_path / f"store-{i}")
        digests.add(build_modelfile(modelfile(workspace, text), "vis", store=store).manifest_digest)
    assert len(digests) == 1


def _error(workspace: Path, text: str) -> str:
    """The build's diagnostics as `mfc build` prints them, the workspace path replaced."""
    modelfile(workspace, text)
    result = mfc("build", "-t", "bad", str(workspace))
    assert result.exit_code == 1
    assert result.stdout == ""
    return result.stderr.replace(str(workspace), "<ws>")


ERRORS = {
    "width": "FROM ./counter-f32.gguf\nFROM ./vision-proj-wide.gguf\n",
    "missing-tensor": "FROM ./vision-proj-missing.gguf\nFROM ./counter-f32.gguf\n",
    "unknown-type": "FROM ./counter-f32.gguf\nFROM ./proj-unknown.gguf\n",
    "no-type": "FROM ./counter-f32.gguf\nFROM ./proj-untyped.gguf\n",
    "missing-key": "FROM ./counter-f32.gguf\nFROM ./proj-no-image-size.gguf\n",
    "projector-alone": "FROM ./vision-proj.gguf\n",
    "only-projectors": "FROM ./vision-proj.gguf\nFROM ./vision-proj-wide.gguf\n",
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_projector_errors_are_located_and_store_nothing(
    case: str, workspace: Path, store: Store, snapshot
) -> None:
    from build_helpers import write_projector

    write_projector(workspace / "proj-unknown.gguf", projector_type="llava-next-ish")
    write_projector(workspace / "proj-untyped.gguf", projector_type=None)
    write_projector(workspace / "proj-no-image-size.gguf", drop=("clip.vision.image_size",))
    assert _error(workspace, ERRORS[case]) == snapshot
    assert blobs(store) == []  # checked before anything is stored
    assert not (workspace / "Modelfile.lock").exists()


def test_width_is_checked_against_a_base_from_the_store(workspace: Path, store: Store) -> None:
    """`FROM ./dir` whose model is fine but whose projector is too narrow: MF224 on that line,
    even when the model is already in the store (the check runs on the resolved base too)."""
    build_modelfile(modelfile(workspace, "FROM ./counter-f32.gguf\n"), "plain", store=store)
    both = workspace / "odd"
    both.mkdir()
    shutil.copyfile(workspace / "counter-f32.gguf", both / "counter-f32.gguf")
    shutil.copyfile(workspace / "vision-proj-wide.gguf", both / "mmproj.gguf")
    with pytest.raises(DiagnosticError) as err:
        build_modelfile(modelfile(workspace, "SYSTEM s\nFROM ./odd\n"), "odd", store=store)
    (diag,) = err.value.diagnostics
    assert (diag.code, diag.span.line) == ("MF224", 2)
    assert "output is 64 wide" in diag.message and "embedding length is 128" in diag.message


def test_two_text_models_still_warn(workspace: Path, store: Store) -> None:
    result = build_modelfile(modelfile(workspace, MERGED), "two", store=store)
    ((code, line),) = [(d.code, d.span.line if d.span else 0) for d in result.diagnostics]
    assert (code, line) == ("MF107", 1)
    assert "given again on line 2; this one is ignored" in result.diagnostics[0].message
    assert layer_types(store, "two") == [mt.MODEL]
    assert read_image(store, "two", header=True).gguf.file_type == "F32"  # the last one won


def test_two_projectors_warn_and_the_last_wins(workspace: Path, store: Store) -> None:
    from build_helpers import write_projector

    write_projector(workspace / "other-proj.gguf")
    mf = modelfile(
        workspace, "FROM ./other-proj.gguf\nFROM ./counter-f32.gguf\nFROM ./vision-proj.gguf\n"
    )
    result = build_modelfile(mf, "vis", store=store)
    assert [(d.code, d.span.line if d.span else 0) for d in result.diagnostics] == [("MF107", 1)]
    projector = store.read_manifest("vis").layer(mt.PROJECTOR)
    assert projector is not None
    assert (
        store.blob_path(projector.digest).read_bytes()
        == (workspace / "vision-proj.gguf").read_bytes()
    )


def test_a_name_among_the_from_lines_keeps_last_wins(workspace: Path, store: Store) -> None:
    """A FROM naming a model is not a local path: the checker warns as before and the last
    FROM is the base; here that is a projector, which cannot be a model (MF226)."""
    build_modelfile(modelfile(workspace, "FROM ./counter-f32.gguf\n"), "plain", store=store)
    mf = modelfile(workspace, "FROM plain\nFROM ./vision-proj.gguf\n")
    check = mfc("check", "--json", str(mf))
    assert [d["code"] for d in json.loads(check.stdout)["diagnostics"]] == ["MF107"]
    # all local paths: nothing to say before the files are read
    merged = mfc("check", "--json", str(modelfile(workspace, MERGED, "Merged")))
    assert json.loads(merged.stdout)["diagnostics"] == []
    with pytest.raises(DiagnosticError) as err:
        build_modelfile(workspace / "Modelfile", "x", store=store)
    assert [d.code for d in err.value.diagnostics] == ["MF226"]


def test_quantize_keeps_the_projector(workspace: Path, store: Store) -> None:
    """--quantize converts the text model; the projector layer is stored as given."""
    mf = modelfile(workspace, "FROM ./counter-f32.gguf\nFROM ./vision-proj.gguf\n")
    build_modelfile(mf, "vq", store=store, quantize="q8_0")
    assert layer_types(store, "vq") == [mt.MODEL, mt.PROJECTOR]
    assert read_image(store, "vq", header=True).gguf.file_type == "Q8_0"
    projector = store.read_manifest("vq").layer(mt.PROJECTOR)
    assert projector is not None
    assert (
        store.blob_path(projector.digest).read_bytes()
        == (workspace / "vision-proj.gguf").read_bytes()
    )
