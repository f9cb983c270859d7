"""`mfc run` one-shot and `mfc template render`, as real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MFC = [sys.executable, "-m", "mfc"]


def mfc(*args: str, stdin: str | None = None, env: dict[str, str] | None = None):
    return subprocess.run(
        [*MFC, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


@pytest.fixture
def counter(fixture_models: dict[str, Path]) -> str:
    return str(fixture_models["counter-f32.gguf"])


def test_run_prompt_argument_streams_answer(counter: str, mfc_home: Path) -> None:
    # A bare GGUF has no params layer, so Ollama's defaults apply (temperature
    # 0.8, top_p 0.9): the counter's successor alone holds > 0.98 of the
    # probability, so top_p keeps only it and the answer is still certain.
    result = mfc("run", counter, "abc", env={"MFC_MODELS": str(mfc_home)}, stdin="")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "defghijklmnopqrstuvwxyz\n"


def test_run_reads_piped_stdin(counter: str) -> None:
    result = mfc("run", counter, stdin="klm\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "nopqrstuvwxyz\n"


def test_run_verbose_prints_ollama_stats(counter: str) -> None:
    result = mfc("run", counter, "abc", "--verbose", stdin="")
    assert result.returncode == 0, result.stderr
    labels = [line.split(":")[0] for line in result.stderr.splitlines()]
    assert labels == [
        "total duration",
        "load duration",
        "prompt eval count",
        "prompt eval duration",
        "prompt eval rate",
        "eval count",
        "eval duration",
        "eval rate",
    ]
    assert "eval count:           23 token(s)" in result.stderr


def test_run_format_json(counter: str) -> None:
    result = mfc("run", counter, "abc", "--format", "json", "--keepalive", "5m", stdin="")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("{")


def test_missing_model_is_a_clear_error(mfc_home: Path) -> None:
    result = mfc("run", "nosuch", "hi", env={"MFC_MODELS": str(mfc_home)}, stdin="")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "error[MF301]: model `nosuch` not found" in result.stderr
    assert str(mfc_home) in result.stderr  # what was searched
    assert "mfc build" in result.stderr  # how to get one


def test_template_render_prints_exact_prompt(counter: str, snapshot) -> None:
    result = mfc(
        "template",
        "render",
        counter,
        "--system",
        "sys",
        "--message",
        "user:abc",
        "--message",
        "assistant:def",
        "--prompt",
        "ghi",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "<s>[system]sys\n[user]abc\n[assistant]def\n[user]ghi"
    assert result.stdout == snapshot


def test_template_render_ends_the_line_on_a_terminal(counter: str) -> None:
    import pexpect

    child = pexpect.spawn(
        sys.executable,
        ["-m", "mfc", "template", "render", counter, "--prompt", "ghi"],
        encoding="utf-8",
        timeout=120,
    )
    child.expect(pexpect.EOF)
    assert child.before.endswith("[user]ghi\r\n")  # piped output stays exact (test above)


def test_template_render_rejects_bad_message(counter: str) -> None:
    result = mfc("template", "render", counter, "--message", "robot:hi")
    assert result.returncode == 2
    assert "ROLE:TEXT" in result.stderr


def test_llama_cpp_is_imported_lazily() -> None:
    code = (
        "import sys, mfc.cli.run_cmds, mfc.cli.repl, mfc.runtime.session, mfc.runtime.engine;"
        "sys.exit('llama_cpp' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
    result = mfc("run", "--help")
    assert result.returncode == 0 and "--keepalive" in result.stdout


def test_runtime_public_api_sorted_and_complete() -> None:
    import mfc.runtime as api

    assert api.__all__ == sorted(api.__all__)
    for name in api.__all__:
        assert hasattr(api, name)


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("./nofile.gguf", "no such file: `./nofile.gguf` (relative to {cwd})"),
        ("nofile.gguf", "no such file: `nofile.gguf` (relative to {cwd})"),
        ("./nofile", "no such file: `./nofile` (relative to {cwd})"),
        ("{cwd}/gone.gguf", "no such file: `{cwd}/gone.gguf`"),
        ("./adir", "`./adir` is a directory, not a GGUF model file"),
        (
            "dir/x",
            "model `dir/x` not found, and there is no file `dir/x` either",
        ),
    ],
    ids=["dot-slash", "bare-gguf", "dot-slash-no-ext", "absolute", "directory", "name-or-path"],
)
def test_missing_model_file_is_no_such_file(
    arg: str, message: str, tmp_path: Path, mfc_home: Path
) -> None:
    (tmp_path / "adir").mkdir()
    result = subprocess.run(
        [*MFC, "run", arg.format(cwd=tmp_path), "hi"],
        input="",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "MFC_MODELS": str(mfc_home)},
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    first = result.stderr.splitlines()[0]
    assert first == f"error[MF301]: {message.format(cwd=tmp_path)}"
    assert "namespace" not in result.stderr  # not a complaint about model-name syntax
    assert "help: " in result.stderr


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("not-gguf.gguf", "not a GGUF file (it starts with b'<!do'"),
        ("truncated.gguf", "the file is truncated"),
    ],
)
def test_broken_model_file_is_a_located_error(
    fixture: str, reason: str, fixture_models: dict[str, Path]
) -> None:
    path = fixture_models[fixture]
    result = mfc("run", str(path), "hi", stdin="")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error[MF309]: {path} is not a usable GGUF file: {reason}")


def test_run_without_a_terminal_is_one_shot(counter: str) -> None:
    # `</dev/null`: no REPL on a non-terminal (Ollama reads stdin as the prompt);
    # an empty prompt only loads the model.
    result = subprocess.run(
        [*MFC, "run", counter],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert ">>>" not in result.stdout
