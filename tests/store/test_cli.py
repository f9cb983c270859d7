"""The store commands end to end through the `mfc` click group, on a real store."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from syrupy.assertion import SnapshotAssertion

from mfc.cli.main import cli
from mfc.store import Store

from .conftest import stage


def mfc(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def models(store: Store, fixture_models: dict[str, Path]) -> Store:
    stage(
        store,
        "counter",
        fixture_models["counter-f32.gguf"],
        template="{{ if .System }}{{ .System }}\n{{ end }}{{ .Prompt }}",
        system="You count.",
        params={"stop": ["<|im_end|>", " User:"], "temperature": 0.7, "num_ctx": 4096},
        adapters=((fixture_models["lora-shift.gguf"], 0.5),),
        license_text="MIT License\n\nCopyright (c) the mfc authors\nPermission is granted",
    )
    stage(store, "me/counter:f16", fixture_models["counter-f16.gguf"], template=None)
    return store


def test_list(models: Store) -> None:
    three_and_a_half_hours = time.time() - 3.5 * 3600
    for entry in models.list_models():
        os.utime(models.manifest_path(entry.name), (three_and_a_half_hours,) * 2)
    result = mfc("list")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    ids = {e.name.display: e.digest[7:19] for e in models.list_models()}
    assert lines[1].split() == [
        "counter:latest",
        ids["counter:latest"],
        "857",
        "KB",
        "3",
        "hours",
        "ago",
    ]
    assert lines[2].split()[:4] == ["me/counter:f16", ids["me/counter:f16"], "348", "KB"]


def test_list_json(models: Store, snapshot: SnapshotAssertion) -> None:
    result = mfc("list", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.output)
    for row in rows:
        assert row.pop("modified").endswith("Z")
    assert rows == snapshot


def test_show(models: Store, snapshot: SnapshotAssertion) -> None:
    result = mfc("show", "counter")
    assert result.exit_code == 0
    assert result.output == snapshot


def test_show_parts(models: Store, snapshot: SnapshotAssertion) -> None:
    assert mfc("show", "counter", "--template").output == (
        "{{ if .System }}{{ .System }}\n{{ end }}{{ .Prompt }}\n"
    )
    assert mfc("show", "counter", "--system").output == "You count.\n"
    assert mfc("show", "counter", "--license").output.startswith("MIT License\n\nCopyright")
    assert mfc("show", "counter", "--parameters").output == snapshot
    shown = json.loads(mfc("show", "counter", "--json").output)
    assert shown["details"] == {
        "architecture": "llama",
        "parameters": "1M",
        "context_length": 512,
        "embedding_length": 128,
        "quantization": "F32",
    }
    assert [a["scale"] for a in shown["adapters"]] == [0.5]
    assert shown["id"] == models.read_manifest("counter").digest


def test_show_modelfile(models: Store, snapshot: SnapshotAssertion) -> None:
    result = mfc("show", "counter", "--modelfile")
    assert result.exit_code == 0
    assert result.output.replace(str(models.root), "<store>") == snapshot


def test_show_falls_back_to_the_gguf_header(store: Store, counter: Path) -> None:
    """An Ollama-made config lacks context/embedding length: they come from the GGUF."""
    from mfc.store import Descriptor, Manifest, canonical_json
    from mfc.store import media_types as mt

    model = store.put_file(counter)
    config = store.put_bytes(canonical_json({"model_format": "gguf", "file_type": "F32"}))
    store.write_manifest(
        "ollama-made", Manifest(Descriptor(mt.CONFIG, *config), (Descriptor(mt.MODEL, *model),))
    )
    details = json.loads(mfc("show", "ollama-made", "--json").output)["details"]
    assert details["architecture"] == "llama"
    assert details["context_length"] == 512
    assert details["embedding_length"] == 128


def test_errors_are_coded_diagnostics_and_exit_1(store: Store) -> None:
    """Store commands report as `mfc run` does: `error[MFxxx]: what` plus a `help:` line."""
    result = CliRunner().invoke(cli, ["show", "nothere"])
    assert result.exit_code == 1
    manifest = store.manifests_dir / "registry.ollama.ai" / "library" / "nothere" / "latest"
    assert result.stderr == (
        "error[MF219]: model `nothere:latest` not found\n"
        f"help: no manifest at {manifest} (store {store.root}, set by $MFC_MODELS);"
        " build it with `mfc build -t NAME`, load it with `mfc load -i FILE.tar`,"
        " or see `mfc list`\n"
    )
    result = CliRunner().invoke(cli, ["rm", "../etc"])
    assert result.exit_code == 1
    assert result.stderr == (
        "error[MF220]: invalid model name `../etc`\n"
        "help: the namespace `..` must start with a letter, digit or `_` and contain only"
        " letters, digits and `-` `_`\n"
    )
    result = CliRunner().invoke(cli, ["cp", "nothere", "copy"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error[MF219]: model `nothere:latest` not found\nhelp: ")
    result = CliRunner().invoke(cli, ["verify", "a b"])
    assert result.exit_code == 1
    assert result.stderr == (
        "error[MF220]: invalid model name 'a b'\n"
        "help: names cannot contain NUL, `\\` or whitespace\n"
    )


def test_a_damaged_store_is_mf221_with_a_repair_hint(models: Store) -> None:
    manifest = models.read_manifest("counter")
    blob = models.blob_path(manifest.layers[0].digest)
    blob.unlink()
    result = CliRunner().invoke(cli, ["cp", "counter", "copy"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error[MF221]: ")
    assert result.stderr.endswith(
        "help: `mfc verify` checks every blob; rebuild or re-load the damaged model\n"
    )


def test_cp_rm_gc(models: Store) -> None:
    result = mfc("cp", "COUNTER", "backup:v1")
    assert result.output == "copied 'counter:latest' to 'backup:v1'\n"
    assert models.read_manifest("backup:v1") == models.read_manifest("counter")
    result = mfc("rm", "counter")
    assert result.output == "deleted 'counter:latest'\n"  # backup still uses every blob
    result = mfc("rm", "backup:v1", "me/counter:f16")
    assert result.exit_code == 0
    assert result.output.splitlines()[:2] == ["deleted 'backup:v1'", "deleted 'me/counter:f16'"]
    assert result.output.splitlines()[2].startswith("freed ")
    assert list(models.blobs_dir.iterdir()) == []
    result = mfc("gc", "--dry-run")
    assert result.output == "would remove 0 blob(s) and 0 temp file(s), 0 B\n"


def test_gc_command(models: Store) -> None:
    orphan = models.put_bytes(b"x" * 2000)
    result = mfc("gc", "--dry-run")
    assert f"would remove {orphan.digest}  2 KB" in result.output
    assert models.has_blob(orphan.digest)
    result = mfc("gc")
    assert result.output.endswith("removed 1 blob(s) and 0 temp file(s), 2 KB\n")
    assert not models.has_blob(orphan.digest)


def test_verify_command(models: Store) -> None:
    assert mfc("verify").output == "ok: every blob matches its digest\n"
    digest = models.read_manifest("counter").layers[0].digest
    models.blob_path(digest).write_bytes(b"bit rot")
    result = CliRunner().invoke(cli, ["verify", "counter"])
    assert result.exit_code == 1
    assert f"corrupt: counter:latest: application/vnd.ollama.image.model blob {digest}" in (
        result.output
    )
    assert mfc("verify", "me/counter:f16").exit_code == 0


def test_save_and_load_commands(models: Store, tmp_path: Path, monkeypatch) -> None:
    tar = tmp_path / "models.tar"
    result = mfc("save", "counter", "me/counter:f16", "-o", str(tar))
    assert result.exit_code == 0
    assert result.output.splitlines()[0].startswith("saved counter:latest sha256:")
    result = mfc("save", "counter", "--oci-layout", str(tmp_path / "layout"))
    assert (tmp_path / "layout" / "index.json").is_file()
    assert CliRunner().invoke(cli, ["save", "counter"]).exit_code == 2  # no destination

    monkeypatch.setenv("MFC_MODELS", str(tmp_path / "other"))
    result = mfc("load", "-i", str(tar))
    assert result.exit_code == 0
    assert sorted(line.split()[1] for line in result.output.splitlines()) == [
        "counter:latest",
        "me/counter:f16",
    ]
    other = Store(tmp_path / "other")
    assert other.read_manifest("counter").digest == models.read_manifest("counter").digest
    assert mfc("verify").exit_code == 0


def test_rm_during_a_build_keeps_blobs_and_says_so(models: Store) -> None:
    with models.building():
        result = CliRunner().invoke(cli, ["rm", "me/counter:f16"])
    assert result.exit_code == 0
    assert "deleted 'me/counter:f16'" in result.output
    assert "run `mfc gc` later" in result.output
    assert len(models.gc(dry_run=True)) > 0


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1 KB"),
        (1500, "1.5 KB"),
        (684800, "684 KB"),
        (4_700_000_000, "4.7 GB"),
        (10**12, "1 TB"),
        (12_345_678, "12 MB"),
    ],
)
def test_human_bytes(n: int, text: str) -> None:
    from mfc.cli.store_cmds import human_bytes

    assert human_bytes(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.2, "Less than a second ago"),
        (1, "About a second ago"),
        (59, "59 seconds ago"),
        (60, "About a minute ago"),
        (3599, "59 minutes ago"),
        (3600, "About an hour ago"),
        (3 * 86400, "3 days ago"),
        (14 * 86400, "2 weeks ago"),
        (90 * 86400, "3 months ago"),
        (800 * 86400, "2 years ago"),
    ],
)
def test_human_ago(seconds: float, text: str) -> None:
    from mfc.cli.store_cmds import human_ago

    assert human_ago(seconds) == text


def test_list_warns_about_unreadable_manifests(models: Store) -> None:
    bad = models.root / "manifests/registry.ollama.ai/library/broken/latest"
    bad.parent.mkdir(parents=True)
    bad.write_text("{")
    result = CliRunner().invoke(cli, ["list"])
    assert result.exit_code == 0
    assert f"warning: manifest {bad} is unreadable" in result.stderr
    assert "broken" not in result.stdout
    assert "counter:latest" in result.stdout
