"""`mfc run MODEL "… ./img.png"` and the REPL with image paths, as real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pexpect
import pytest

from mfc.build import build_text
from mfc.store import Descriptor, Manifest, Store
from mfc.store import media_types as mt
from mfc.testing.vision import BLUE, BLUE_CONTINUATION, RED, RED_CONTINUATION, image_png

MFC = [sys.executable, "-m", "mfc"]


def mfc(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MFC, *args],
        input="",
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "MFC_MODELS": str(home)},
        timeout=120,
    )


def with_projector(store: Store, name: str, projector: Path) -> None:
    """Add a projector layer to stored model ``name`` with the store API alone."""
    manifest = store.read_manifest(name)
    blob = store.put_file(projector)
    layers = (manifest.layers[0], Descriptor(mt.PROJECTOR, *blob), *manifest.layers[1:])
    store.write_manifest(name, Manifest(manifest.config, layers))


def build(store: Store, name: str, model: Path, projector: Path | None = None) -> None:
    """A Modelfile build; with ``projector``, a second FROM line (Ollama's spelling)."""
    also = f"FROM {projector}\n" if projector is not None else ""
    text = f"FROM {model}\n{also}PARAMETER temperature 0\nPARAMETER num_predict 30\n"
    build_text(text, model.parent, name, store=store)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """The directory `mfc run` runs in: red and blue images, a text file named like one."""
    work = tmp_path / "work"
    (work / "my pics").mkdir(parents=True)
    (work / "red.png").write_bytes(image_png(RED))
    (work / "my pics" / "blue.JPG").write_bytes(image_png(BLUE))  # a PNG: the name is not sniffed
    (work / "notes.png").write_text("not a picture")
    return work


@pytest.fixture
def vis(fixture_models: dict[str, Path], mfc_home: Path) -> str:
    """The counter with the fixture projector: red reads as `r`, blue as `b`."""
    store = Store.from_env()
    build(store, "vis", fixture_models["counter-f32.gguf"], fixture_models["vision-proj.gguf"])
    return "vis"


def test_run_with_an_image_path(vis: str, work: Path, mfc_home: Path) -> None:
    result = mfc("run", vis, "./red.png", cwd=work, home=mfc_home)
    assert result.returncode == 0, result.stderr
    assert result.stdout == RED_CONTINUATION + "\n"
    assert result.stderr == "Added image './red.png'\n"  # as Ollama's CLI says it


def test_run_with_a_quoted_path_with_spaces(vis: str, work: Path, mfc_home: Path) -> None:
    result = mfc("run", vis, "'./my pics/blue.JPG'", cwd=work, home=mfc_home)
    assert result.returncode == 0, result.stderr
    assert result.stdout == BLUE_CONTINUATION + "\n"
    # The text stays, after the image (Ollama's order): the counter continues the text.
    result = mfc("run", vis, "./my\\ pics/blue.JPG", "abc", cwd=work, home=mfc_home)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("defgh")


def test_repl_takes_image_paths(vis: str, work: Path, mfc_home: Path) -> None:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "mfc", "run", vis],
        cwd=str(work),
        env={**os.environ, "MFC_MODELS": str(mfc_home), "TERM": "dumb", "COLUMNS": "200"},
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 200),
    )
    try:
        child.expect_exact(">>> ")
        child.sendline("./red.png")
        child.expect_exact(">>> ")
        assert "Added image './red.png'" in child.before
        assert RED_CONTINUATION in child.before
        # A line starting with an absolute image path is a message; the first image stays
        # in the conversation and the answer follows the newest one.
        child.sendline(f'"{work}/my pics/blue.JPG"')
        child.expect_exact(">>> ")
        assert BLUE_CONTINUATION in child.before
        child.sendline("./nothing.png")
        child.expect_exact(">>> ")
        assert "error[MF311]: image `./nothing.png`" in child.before
        child.sendline("/bye")
        child.expect(pexpect.EOF)
    finally:
        child.terminate(force=True)


@pytest.fixture
def unloadable(vocab_gguf: Callable[..., Path], mfc_home: Path) -> str:
    """A vision model llama.cpp cannot load (a GGUF header, no tensors): an image error
    reported instead of MF308 proves the image was checked before anything loaded."""
    store = Store.from_env()
    model = vocab_gguf("vocab.gguf", ["<s>", "a", "b"])
    build(store, "broken-vis", model)
    # The builder would refuse this pair, so the projector layer goes in by hand.
    with_projector(store, "broken-vis", model)
    return "broken-vis"


@pytest.fixture
def text_only(fixture_models: dict[str, Path], mfc_home: Path) -> str:
    build(Store.from_env(), "counter", fixture_models["counter-f32.gguf"])
    return "counter"


def test_missing_image_is_an_error_before_the_model_loads(
    unloadable: str, work: Path, mfc_home: Path
) -> None:
    result = mfc("run", unloadable, "what is in ./cat.png", cwd=work, home=mfc_home)
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"error[MF311]: image `./cat.png` (relative to {work}): no such file" in result.stderr
    assert "without its leading" in result.stderr  # how to keep a path as text
    assert "MF308" not in result.stderr


def test_a_file_that_is_not_an_image_is_an_error(
    unloadable: str, work: Path, mfc_home: Path
) -> None:
    result = mfc("run", unloadable, "what is in", "./notes.png", cwd=work, home=mfc_home)
    assert result.returncode == 1
    assert "error[MF311]: image `./notes.png`" in result.stderr
    assert "not an image mfc can read" in result.stderr


def test_unreadable_image_is_an_error(unloadable: str, work: Path, mfc_home: Path) -> None:
    (work / "photos.png").mkdir()  # unreadable even as root (permissions are not)
    result = mfc("run", unloadable, "'./photos.png'", cwd=work, home=mfc_home)
    assert result.returncode == 1
    assert "error[MF311]: image `./photos.png`" in result.stderr
    assert "Is a directory" in result.stderr


def test_a_good_image_reaches_the_model(unloadable: str, work: Path, mfc_home: Path) -> None:
    # The image passes; the (unloadable) model is what fails next: the order of checks.
    result = mfc("run", unloadable, "what is in ./red.png", cwd=work, home=mfc_home)
    assert result.returncode == 1
    assert "Added image './red.png'" in result.stderr
    assert "error[MF308]" in result.stderr


def test_text_only_model_given_an_image_is_an_error(
    text_only: str, work: Path, mfc_home: Path
) -> None:
    result = mfc("run", text_only, "what is in ./red.png", cwd=work, home=mfc_home)
    assert result.returncode == 1
    assert result.stdout == ""
    assert 'error[MF312]: "counter" does not support vision' in result.stderr
    assert "`./red.png`" in result.stderr


def test_text_only_model_keeps_a_path_that_names_no_file(
    text_only: str, work: Path, mfc_home: Path
) -> None:
    """As Ollama's CLI: a text model's prompt is sent as typed (the counter continues it)."""
    result = mfc("run", text_only, "abc ./nothing.png", cwd=work, home=mfc_home)
    assert result.returncode == 0, result.stderr
    # The path is still in the prompt: the counter continues "…png" (without it: "def…").
    assert result.stdout.strip() == "hijklmnopqrstuvwxyz"


def test_repl_image_errors_keep_the_session(
    text_only: str, unloadable: str, work: Path, mfc_home: Path
) -> None:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "mfc", "run", text_only],
        cwd=str(work),
        env={**os.environ, "MFC_MODELS": str(mfc_home), "TERM": "dumb", "COLUMNS": "200"},
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 200),
    )
    try:
        child.expect_exact(">>> ")
        # A line starting with an image path is a message, not an unknown command.
        child.sendline(f"{work}/red.png what is this")
        child.expect_exact(">>> ")
        assert 'error[MF312]: "counter" does not support vision' in child.before
        assert "Unknown command" not in child.before
        child.sendline("/frobnicate.txt")  # still a command
        child.expect_exact(">>> ")
        assert "Unknown command '/frobnicate.txt'" in child.before
        child.sendline("/bye")
        child.expect(pexpect.EOF)
    finally:
        child.terminate(force=True)
