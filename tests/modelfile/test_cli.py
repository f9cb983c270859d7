"""`mfc parse/check/fmt` through click: JSON shape, exit codes, stdin, fmt modes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mfc.cli.main import cli

GOOD = 'from llama3\nparameter stop   "<|eot|>"\nADAPTER  --scale=0.5 ./a.gguf\nMESSAGE user hi  \n'


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input)


def test_parse_json_exact_shape(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_text("FROM llama3\nPARAMETER stop <|eot|>\nADAPTER --scale=0.5 ./a.gguf\n"
                    "MESSAGE user hi\nPARAMETER nonsense 1\n")  # fmt: skip
    bad = tmp_path / "bad"
    bad.write_text("FROM x\nFORM y\n")
    result = run("parse", "--json", str(good), str(bad))
    assert result.exit_code == 1
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first == {
        "file": str(good),
        "ok": True,
        "instructions": [
            {"instruction": "FROM", "value": "llama3", "line": 1, "column": 1},
            {"instruction": "PARAMETER", "value": "<|eot|>", "name": "stop", "line": 2,
             "column": 1},
            {"instruction": "ADAPTER", "value": "./a.gguf", "flags": {"scale": "0.5"}, "line": 3,
             "column": 1},
            {"instruction": "MESSAGE", "value": "hi", "role": "user", "line": 4, "column": 1},
            {"instruction": "PARAMETER", "value": "1", "name": "nonsense", "line": 5, "column": 1},
        ],
        "diagnostics": [],
    }  # fmt: skip
    assert second["ok"] is False
    assert second["diagnostics"] == [
        {"severity": "error", "code": "MF001", "message": "unknown instruction `FORM`",
         "line": 2, "column": 1, "hint": "did you mean `FROM`?"}
    ]  # fmt: skip


def test_parse_stdin_ok() -> None:
    result = run("parse", "--json", "-", input="FROM x\n")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["file"] == "-"


def test_check_human_and_exit_codes(tmp_path: Path) -> None:
    mf = tmp_path / "Modelfile"
    mf.write_text("FROM x\nPARAMETER temprature 1\n")
    result = run("check", str(mf))
    assert result.exit_code == 1
    assert f"{mf}:2:11: error[MF102]: unknown parameter `temprature`" in result.stderr
    assert "help: did you mean `temperature`?" in result.stderr
    mf.write_text("FROM x\nPARAMETER mirostat 1\n")  # warnings only
    assert run("check", str(mf)).exit_code == 0


def test_check_json_and_build_args(tmp_path: Path) -> None:
    mf = tmp_path / "Modelfile"
    mf.write_text("ARG BASE\nFROM ${BASE}\n")
    assert run("check", "--json", str(mf)).exit_code == 1
    result = run("check", "--json", "--build-arg", "BASE=llama3", str(mf))
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"file": str(mf), "ok": True, "diagnostics": []}


def test_missing_file_is_a_diagnostic(tmp_path: Path) -> None:
    result = run("check", str(tmp_path / "nope"))
    assert result.exit_code == 1
    assert "error[MF009]" in result.stderr


def test_fmt_check_diff_write(tmp_path: Path) -> None:
    mf = tmp_path / "Modelfile"
    mf.write_text(GOOD)
    assert run("fmt", "--check", str(mf)).exit_code == 1
    diff = run("fmt", "--diff", str(mf))
    assert diff.exit_code == 1 and "+FROM llama3" in diff.stdout
    assert mf.read_text() == GOOD  # --check/--diff change nothing
    assert run("fmt", str(mf)).exit_code == 0
    formatted = mf.read_text()
    assert formatted == (
        "FROM llama3\nPARAMETER stop <|eot|>\nADAPTER --scale=0.5 ./a.gguf\nMESSAGE user hi\n"
    )
    assert run("fmt", "--check", str(mf)).exit_code == 0  # idempotent


def test_fmt_stdin_and_refuses_broken(tmp_path: Path) -> None:
    result = run("fmt", "-", input="from x\nsystem   a  \n")
    assert result.exit_code == 0 and result.stdout == "FROM x\nSYSTEM a\n"
    bad = tmp_path / "Modelfile"
    bad.write_text("FROM x\nBAD\n")
    assert run("fmt", str(bad)).exit_code == 1
    assert bad.read_text() == "FROM x\nBAD\n"


def test_fmt_keeps_crlf(tmp_path: Path) -> None:
    mf = tmp_path / "Modelfile"
    mf.write_bytes(b"from x\r\nsystem hi\r\n")
    run("fmt", str(mf))
    assert mf.read_bytes() == b"FROM x\r\nSYSTEM hi\r\n"


@pytest.mark.parametrize(
    "data,expected",
    [
        (b"from x\rsystem hi\r", b"FROM x\rSYSTEM hi\r"),  # CR only: no LF anywhere
        (b"from x\nsystem hi\r\nparameter top_k 1\r\n", b"FROM x\r\nSYSTEM hi\r\n"
         b"PARAMETER top_k 1\r\n"),  # mostly CRLF, first line LF
        (b"from x\n", b"FROM x\n"),
    ],
)  # fmt: skip
def test_fmt_keeps_the_files_line_ends(tmp_path: Path, data: bytes, expected: bytes) -> None:
    mf = tmp_path / "Modelfile"
    mf.write_bytes(data)
    assert run("fmt", str(mf)).exit_code == 0
    assert mf.read_bytes() == expected


def test_render_never_prints_control_characters(tmp_path: Path) -> None:
    mf = tmp_path / "Modelfile"
    mf.write_bytes(b"FROM x\n\x1b[31mEVIL x\n")
    result = run("check", str(mf))
    assert result.exit_code == 1
    assert "\x1b" not in result.stderr and "\u241b[31mEVIL" in result.stderr


def test_console_script_subprocess(tmp_path: Path) -> None:
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("mfc")
    proc = subprocess.run(
        [str(exe), "parse", "--json", "-"],
        input=b"FROM llama3\nSYSTEM hi\n",
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["ok"] and [i["instruction"] for i in record["instructions"]] == ["FROM", "SYSTEM"]
    proc = subprocess.run([str(exe), "check", "-"], input=b"SYSTEM hi\n", capture_output=True)
    assert proc.returncode == 1 and b"error[MF101]" in proc.stderr
