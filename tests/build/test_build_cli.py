"""`mfc build` / `mfc create` end to end: real Modelfiles, the front-end, the store, the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mfc.build import build_modelfile, build_text
from mfc.build.lockfile import read_lock
from mfc.cli.main import cli
from mfc.diagnostics.diagnostic import DiagnosticError
from mfc.store import media_types as mt
from mfc.store.store import Store

REPO = Path(__file__).resolve().parents[2]


def mfc(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_build_prints_the_digest(workspace: Path, store: Store) -> None:
    write(workspace / "Modelfile", "FROM ./counter-f32.gguf\nSYSTEM hi\n")
    result = mfc("build", "-t", "m", str(workspace))
    assert result.exit_code == 0, result.output
    digest = result.stdout.strip()
    assert digest == store.read_manifest("m").digest
    assert f"built m:latest {digest[7:19]}" in result.stderr
    assert read_lock(workspace / "Modelfile.lock").manifest == digest  # type: ignore[union-attr]

    quiet = mfc("build", "--quiet", "-t", "m", str(workspace))
    assert (quiet.stdout, quiet.stderr) == (digest + "\n", "")

    created = mfc("create", "m2", "-f", str(workspace / "Modelfile"))
    assert created.exit_code == 0
    assert created.stdout.strip() == digest
    assert store.read_manifest("m2").digest == digest


def test_build_errors_are_rendered_with_the_source_line(workspace: Path, store: Store) -> None:
    write(
        workspace / "Modelfile",
        "FROM ./counter-f32.gguf\nADAPTER ./lora-other-arch.gguf\n",
    )
    result = mfc("build", "-t", "m", str(workspace))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"{workspace / 'Modelfile'}:2:1: error[MF209]: ADAPTER `./lora-other-arch.gguf` does not "
        "fit the base model: the adapter is for architecture `qwen2` but the base model is "
        "`llama`\n"
        "2 | ADAPTER ./lora-other-arch.gguf\n"
        "  | ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ incompatible adapter\n"
        "help: use an adapter trained for this base model\n"
    )
    assert store.list_models() == []


def test_front_end_errors_stop_the_build(workspace: Path, store: Store) -> None:
    write(workspace / "Modelfile", "FROM ./counter-f32.gguf\nPARAMETER temprature 0.1\n")
    result = mfc("build", "-t", "m", str(workspace))
    assert result.exit_code == 1
    assert "error[MF102]" in result.stderr
    assert not (workspace / "Modelfile.lock").exists()


def test_bad_flags(workspace: Path, store: Store) -> None:
    write(workspace / "Modelfile", "FROM ./counter-f32.gguf\n")
    assert "expected KEY=VALUE" in mfc("build", "--build-arg", "X", str(workspace)).output
    missing = mfc("build", "-t", "m", str(workspace / "nowhere"))
    assert missing.exit_code == 1
    assert "no Modelfile at" in missing.stderr
    bad_tag = mfc("build", "-t", "a/b/c/d", str(workspace))
    assert bad_tag.exit_code == 1
    assert "error[MF214]" in bad_tag.stderr


def test_build_args_and_locked(workspace: Path, store: Store) -> None:
    write(workspace / "Modelfile", "ARG WHO=counter\nFROM ./counter-f32.gguf\nSYSTEM ${WHO}\n")
    first = mfc("build", "-t", "m", str(workspace))
    assert first.exit_code == 0
    locked = mfc("build", "--locked", "-t", "m", str(workspace))
    assert locked.exit_code == 0
    assert locked.stdout == first.stdout
    drift = mfc("build", "--locked", "--build-arg", "WHO=x", "-t", "m", str(workspace))
    assert drift.exit_code == 1
    assert "error[MF210]: --locked: build arg WHO: locked `counter`, now `x`" in drift.stderr
    assert "help: rebuild without --locked to update Modelfile.lock" in drift.stderr
    assert store.read_manifest("m").digest == first.stdout.strip()


def test_modelfile_dependencies(workspace: Path, store: Store) -> None:
    write(workspace / "base" / "Modelfile", "FROM ../counter-f32.gguf\nSYSTEM base\nLICENSE A\n")
    write(workspace / "mid.modelfile", "FROM ./base/Modelfile\nPARAMETER top_k 3\n")
    write(workspace / "Modelfile", "FROM ./mid.modelfile\nSYSTEM top\nLICENSE B\n")
    result = build_modelfile(workspace / "Modelfile", "top", store=store)
    m = result.manifest
    assert store.read_blob(m.layer(mt.SYSTEM).digest) == b"top"
    assert [store.read_blob(d.digest) for d in m.layers_of(mt.LICENSE)] == [b"A", b"B"]
    assert m.layer(mt.PARAMS) is not None
    # every Modelfile of the graph has its lock; dependencies are not named in the store
    assert [e.name.display for e in store.list_models()] == ["top:latest"]
    mid_lock = read_lock(workspace / "mid.modelfile.lock")
    assert mid_lock is not None and mid_lock.inputs[0].kind == "modelfile"
    top_lock = read_lock(workspace / "Modelfile.lock")
    assert top_lock is not None
    assert (top_lock.inputs[0].kind, top_lock.inputs[0].digest) == ("modelfile", mid_lock.manifest)
    assert top_lock.inputs[0].path == "mid.modelfile"


def test_build_cycles_report_the_chain(workspace: Path, store: Store) -> None:
    write(workspace / "a.modelfile", "FROM ./b.modelfile\n")
    write(workspace / "b.modelfile", "SYSTEM x\nFROM ./c/Modelfile\n")
    write(workspace / "c" / "Modelfile", "FROM ../a.modelfile\n")
    with pytest.raises(DiagnosticError) as exc:
        build_modelfile(workspace / "a.modelfile", "a", store=store)
    (d,) = exc.value.diagnostics
    assert d.code == "MF204"
    a, b, c = workspace / "a.modelfile", workspace / "b.modelfile", workspace / "c" / "Modelfile"
    assert d.message == f"build cycle: {a} → {b} → {c} → {a}"
    assert d.span is not None and (d.span.file, d.span.line) == (str(c), 1)

    write(workspace / "self.modelfile", "FROM ./self.modelfile\n")
    with pytest.raises(DiagnosticError) as exc:
        build_modelfile(workspace / "self.modelfile", "s", store=store)
    assert exc.value.diagnostics[0].code == "MF204"


def test_build_text_for_the_repl(workspace: Path, store: Store) -> None:
    base = build_modelfile(
        write(workspace / "Modelfile", "FROM ./counter-f32.gguf\n"), "c", store=store
    )
    saved = build_text(
        f"FROM c@{base.manifest_digest}\nSYSTEM saved from the REPL\n",
        workspace,
        "c",
        store=store,
    )
    assert saved.lock_path is None
    assert store.read_manifest("c").digest == saved.manifest_digest
    assert saved.manifest.layer(mt.MODEL) == base.manifest.layer(mt.MODEL)
    with pytest.raises(DiagnosticError) as exc:
        build_text("FROM ./counter-f32.gguf\nPARAMETER nope 1\n", workspace, "x", store=store)
    assert exc.value.diagnostics[0].code == "MF102"


def test_registry_cache_resolution(tmp_path: Path, store: Store) -> None:
    """FROM a name found only in an OCI layout: the image is imported, pinned in the lock."""
    project = write(tmp_path / "proj" / "Modelfile", "FROM counter:f16\nSYSTEM s\n").parent
    cache = tmp_path / "vendored" / "registry_cache"
    shutil.copytree(REPO / "registry_cache", cache)
    result = build_modelfile(project, "m", store=store, registry_cache=cache)
    locked = result.lock.inputs[0]
    assert (locked.kind, locked.name) == (
        "registry_cache",
        "registry.ollama.ai/library/counter:f16",
    )
    assert result.config["file_type"] == "F16"
    assert store.verify() == []
    # found by searching upward from the Modelfile, too
    nested = write(tmp_path / "vendored" / "a" / "b" / "Modelfile", "FROM counter:q8_0\n")
    r2 = build_modelfile(nested, "q", store=store)
    assert r2.lock.inputs[0].kind == "registry_cache"
    assert r2.config["file_type"] == "Q8_0"
    # pinned by digest: must match
    pinned = write(tmp_path / "vendored" / "p" / "Modelfile", f"FROM counter:f16@{locked.digest}\n")
    assert build_modelfile(pinned, "p", store=store).lock.inputs[0].digest == locked.digest
    # by digest alone: the registry cache, then (once imported and named) the store
    by_digest = write(tmp_path / "vendored" / "d" / "Modelfile", f"FROM @{locked.digest}\n")
    fresh = Store(tmp_path / "other-store")
    r3 = build_modelfile(by_digest, "d", store=fresh)
    assert (r3.lock.inputs[0].kind, r3.lock.inputs[0].name) == (
        "registry_cache",
        "registry.ollama.ai/library/counter:f16",
    )
    # `p` (FROM counter:f16@…, nothing added) is that very image, so it is found by digest
    local = build_modelfile(by_digest, "d", store=store, registry_cache=tmp_path / "none")
    assert store.read_manifest("p").digest == locked.digest
    # which local names share the digest varies by machine: the lock records none
    assert store.copy("p", "aaa-first-by-name") == store.read_manifest("p")
    again = build_modelfile(by_digest, "d", store=store, registry_cache=tmp_path / "none")
    assert (local.lock.inputs[0].kind, local.lock.inputs[0].name) == ("model", None)
    assert again.lock == local.lock
    # a lock written where the image came from the registry cache holds where it is local
    lock_file = by_digest.parent / "Modelfile.lock"
    lock_file.write_bytes(r3.lock.to_bytes())
    build_modelfile(by_digest, "d", store=store, locked=True, registry_cache=tmp_path / "none")
    wrong = write(
        tmp_path / "vendored" / "w" / "Modelfile", "FROM counter:nope@sha256:" + "a" * 64 + "\n"
    )
    with pytest.raises(DiagnosticError) as exc:
        build_modelfile(wrong, "w", store=store)
    assert exc.value.diagnostics[0].code == "MF202"
    assert "no image `counter:nope`" in (exc.value.diagnostics[0].hint or "")


@pytest.mark.parametrize("example", ["counter", "layered"])
def test_examples_match_their_committed_locks(tmp_path: Path, store: Store, example: str) -> None:
    """The shipped examples build offline from registry_cache/ to their locked digests."""
    copy = tmp_path / "examples" / example
    shutil.copytree(REPO / "examples" / example, copy)
    result = build_modelfile(
        copy, example, store=store, locked=True, registry_cache=REPO / "registry_cache"
    )
    committed = read_lock(REPO / "examples" / example / "Modelfile.lock")
    assert committed is not None and result.manifest_digest == committed.manifest


def test_adapters_example(tmp_path: Path, store: Store, fixture_models: dict[str, Path]) -> None:
    copy = tmp_path / "adapters"
    shutil.copytree(REPO / "examples" / "adapters", copy)
    for name in ("lora-shift.gguf", "lora-constant.gguf"):
        shutil.copyfile(fixture_models[name], copy / name)
    result = build_modelfile(copy, "shift", store=store, registry_cache=REPO / "registry_cache")
    assert [a["scale"] for a in result.config["mfc"]["adapters"]] == [1.0, 0.0]


def test_modelfile_from_stdin(workspace: Path, store: Store) -> None:
    result = CliRunner().invoke(
        cli,
        ["build", "-f", "-", "-t", "piped", str(workspace)],
        input="FROM ./counter-f32.gguf\nSYSTEM piped\n",
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stderr
    m = store.read_manifest("piped")
    assert m.digest == result.stdout.strip()
    assert store.read_blob(m.layer(mt.SYSTEM).digest) == b"piped"
    assert not list(workspace.glob("*.lock"))
    locked = CliRunner().invoke(cli, ["build", "-f", "-", "--locked", str(workspace)], input="")
    assert locked.exit_code == 1
    assert "--locked needs a Modelfile on disk" in locked.stderr


def test_unwritable_lockfile_is_a_warning(workspace: Path, store: Store) -> None:
    write(workspace / "Modelfile", "FROM ./counter-f32.gguf\n")
    (workspace / "Modelfile.lock").mkdir()  # cannot be replaced by a file, even by root
    result = build_modelfile(workspace, "m", store=store)
    assert [d.code for d in result.diagnostics] == ["MF218"]
    assert store.read_manifest("m").digest == result.manifest_digest
    cli_result = mfc("build", "-t", "m", str(workspace))
    assert cli_result.exit_code == 0
    assert "warning[MF218]: the model was built, but Modelfile.lock could not be written" in (
        cli_result.stderr
    )


def test_one_adapter_twice_keeps_both_scales(workspace: Path, store: Store) -> None:
    """Two layers with one digest pair with the config's scales by position, everywhere."""
    write(
        workspace / "Modelfile",
        "FROM ./counter-f32.gguf\nADAPTER lora-shift.gguf\nADAPTER --scale=0.5 lora-shift.gguf\n",
    )
    assert mfc("build", "-t", "twice", str(workspace)).exit_code == 0
    manifest = store.read_manifest("twice")
    adapters = manifest.layers_of(mt.ADAPTER)
    assert len(adapters) == 2 and adapters[0] == adapters[1]  # two descriptors, one blob
    shown = mfc("show", "twice")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.index("scale 1.0") < shown.stdout.index("scale 0.5")
    modelfile = mfc("show", "twice", "--modelfile").stdout
    adapter_lines = [line for line in modelfile.splitlines() if line.startswith("ADAPTER")]
    assert len(adapter_lines) == 2
    assert "--scale" not in adapter_lines[0] and "--scale=0.5" in adapter_lines[1]

    write(
        workspace / "child" / "Modelfile", "FROM twice\nADAPTER --scale=0.25 ../lora-shift.gguf\n"
    )
    child = build_modelfile(workspace / "child", "child", store=store)
    assert [a["scale"] for a in child.config["mfc"]["adapters"]] == [1.0, 0.5, 0.25]
    assert len(child.manifest.layers_of(mt.ADAPTER)) == 3


def test_progress_bar_starts_each_step_without_the_previous_byte_total() -> None:
    import io

    from rich.console import Console
    from rich.progress import Progress

    from mfc.build import BuildEvent
    from mfc.cli.build_cmds import _BarEvents

    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    with Progress(console=console, transient=True, auto_refresh=False) as bar:
        show = _BarEvents(bar)
        show(BuildEvent("step", "storing big.gguf"))
        show(BuildEvent("bytes", "storing big.gguf", 512, 1024))
        assert [(t.description, t.total, t.completed) for t in bar.tasks] == [
            ("storing big.gguf", 1024, 512)
        ]
        show(BuildEvent("step", "writing manifest m:latest"))
        assert [(t.description, t.total, t.completed) for t in bar.tasks] == [
            ("writing manifest m:latest", None, 0)
        ]


def test_piped_build_prints_facts_as_plain_lines(workspace: Path, store: Store) -> None:
    write(workspace / "Modelfile", "FROM ./counter-f32.gguf\n")
    assert mfc("build", "-t", "m", str(workspace)).exit_code == 0
    again = mfc("build", "-t", "m", str(workspace))
    assert again.stderr.splitlines()[0].startswith("counter-f32.gguf: unchanged (sha256:")
