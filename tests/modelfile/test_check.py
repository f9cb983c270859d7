"""The semantic pass: ModelSpec contents and MF1xx diagnostics, table-driven."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfc.modelfile import check_file, check_text

DIGEST = "sha256:" + "ab" * 32


def _codes(text: str, **kw) -> list[str]:
    return [d.code for d in check_text(text, **kw).diagnostics]


CASES = {
    "missing-from": ("PARAMETER top_k 1\n", ["MF101"]),
    "empty-file": ("", ["MF101"]),
    "unknown-param": ("FROM x\nPARAMETER temprature 1\n", ["MF102"]),
    "param-named-system": ("FROM x\nPARAMETER system hi\n", ["MF102"]),
    "param-named-model": ("FROM x\nPARAMETER model y\n", ["MF102"]),
    "bad-type": ("FROM x\nPARAMETER top_k high\n", ["MF103"]),
    "out-of-range": ("FROM x\nPARAMETER top_p 2\n", ["MF104"]),
    "deprecated": ("FROM x\nPARAMETER mirostat 1\n", ["MF105"]),
    "duplicate-param": ("FROM x\nPARAMETER top_k 1\nPARAMETER top_k 2\n", ["MF106"]),
    "duplicate-system": ("FROM x\nSYSTEM a\nSYSTEM b\n", ["MF107"]),
    "bad-requires": ("FROM x\nREQUIRES 1.2.3.4\n", ["MF108"]),
    "bad-requires-prerelease-short": ("FROM x\nREQUIRES 1.2-rc1\n", ["MF108"]),
    "bad-flag": ("FROM x\nADAPTER --size=1 a.gguf\n", ["MF111"]),
    "bad-scale": ("FROM x\nADAPTER --scale=x a.gguf\n", ["MF111"]),
    "unset-arg": ("ARG X\nFROM ${X}\n", ["MF112"]),
    "bad-arg": ("ARG 9X=1\nFROM x\n", ["MF113"]),
    "arg-before-decl": ("FROM ${X}\nARG X=1\n", ["MF115"]),
    "empty-from": ("FROM \n", ["MF116"]),
    "empty-adapter": ("FROM x\nADAPTER \n", ["MF116"]),
    "adapter-flag-only": ("FROM x\nADAPTER --scale=0.5\n", ["MF116"]),
    "bad-digest": ("FROM x@sha256:00\n", ["MF117"]),
    "empty-stop": ('FROM x\nPARAMETER stop ""\n', ["MF118"]),
    "template-raises-on-system": (
        'FROM x\nTEMPLATE """{% for m in messages %}{% if m.role == "system" %}'
        '{{ raise_exception(\'no system\') }}{% endif %}{{ m.content }}{% endfor %}"""\n',
        ["MF120"],
    ),
    "template-sandbox-escape": (
        "FROM x\nTEMPLATE {{ messages.__class__.__mro__ }}\n",
        ["MF109"],
    ),
    "draft-same-path": ("FROM ./m.gguf\nDRAFT m.gguf\n", ["MF119"]),
    # look-alike keywords are syntax errors, never an instruction the checker drops
    "dotted-i-license": ("FROM x\nL\u0130CENSE MIT\n", ["MF001"]),
    "long-s-system": ("FROM x\n\u017fYSTEM hi\n", ["MF001"]),
    "invisible-before-keyword": ("\u200bFROM x\n", ["MF010"]),
    "param-with-nbsp": ("FROM x\nPARAMETER temperature \u00a00.7\n", ["MF103"]),
    "ok-draft-name": ("FROM ./m.gguf\nDRAFT tiny\n", []),
    "ok-digest": (f"FROM llama3@{DIGEST}\n", []),
    "ok-literal-dollar": ("FROM x\nSYSTEM costs ${PRICE}\n", []),
    "ok-requires-v": ("FROM x\nREQUIRES v0.14\n", []),
    "ok-tool-role": ("FROM x\nMESSAGE tool {}\n", []),
}


@pytest.mark.parametrize("text,codes", list(CASES.values()), ids=list(CASES))
def test_codes(text: str, codes: list[str]) -> None:
    assert _codes(text) == codes


def test_spec_contents() -> None:
    text = (
        "ARG TAG=3b\nFROM llama3.2:${TAG}\nFROM llama3.2:${TAG}-q8\nDRAFT tiny\n"
        "ADAPTER ./a.gguf\nADAPTER --scale=0.25 ./b.gguf\n"
        "PARAMETER temperature 0.5\nPARAMETER stop <a>\nPARAMETER num_ctx 8192\n"
        "PARAMETER stop <b>\n"
        "PARAMETER temperature 0.25\nTEMPLATE {{ .Prompt }}\nSYSTEM hi\nLICENSE A\nLICENSE B\n"
        "MESSAGE user q\nMESSAGE assistant a\nREQUIRES v0.6.0\nRENDERER r\nPARSER p\n"
    )
    result = check_text(text, build_args={"TAG": "1b"})
    assert [d.code for d in result.diagnostics] == ["MF107", "MF106"]
    spec = result.spec
    assert spec is not None
    assert spec.base.ref == "llama3.2:1b-q8" and spec.base.span.line == 3
    assert spec.draft is not None and spec.draft.ref == "tiny"
    assert [(a.path, a.scale) for a in spec.adapters] == [("./a.gguf", 1.0), ("./b.gguf", 0.25)]
    assert [(p.name, p.value) for p in spec.parameters] == [
        ("temperature", 0.25),
        ("stop", ("<a>", "<b>")),
        ("num_ctx", 8192),
    ]
    assert spec.parameter("num_ctx") == 8192
    assert spec.template and spec.template.value == "{{ .Prompt }}"
    assert spec.system and spec.system.value == "hi"
    assert [t.value for t in spec.licenses] == ["A", "B"]
    assert [(m.role, m.content) for m in spec.messages] == [("user", "q"), ("assistant", "a")]
    assert spec.requires and spec.requires.value == "0.6.0"
    assert spec.renderer and spec.renderer.value == "r"
    assert spec.parser and spec.parser.value == "p"
    assert spec.build_args == (("TAG", "1b"),)


def test_arg_default_quotes_and_unused_build_arg() -> None:
    result = check_text('ARG S="a b"\nFROM x\nSYSTEM ${S}\n', build_args={"NOPE": "1"})
    assert [d.code for d in result.diagnostics] == ["MF114"]
    assert result.spec is not None and result.spec.system.value == "a b"


def test_unset_arg_points_at_use() -> None:
    (diag,) = check_text("ARG X\nFROM  pre-${X}\n").diagnostics
    assert (diag.span.line, diag.span.column, diag.span.end_column) == (2, 11, 15)


def test_paths_checked_relative_to_modelfile(tmp_path: Path) -> None:
    (tmp_path / "base.gguf").write_bytes(b"GGUF")
    (tmp_path / "lora.gguf").write_bytes(b"GGUF")
    mf = tmp_path / "Modelfile"
    mf.write_text("FROM ./base.gguf\nADAPTER lora.gguf\nADAPTER ./gone.gguf\nFROM llama3\n")
    result = check_file(mf)
    assert [(d.code, d.span.line) for d in result.diagnostics] == [("MF107", 1), ("MF110", 3)]
    assert check_file(mf, check_paths=False).diagnostics[0].code == "MF107"


def test_unreadable_file(tmp_path: Path) -> None:
    result = check_file(tmp_path / "nope")
    assert [d.code for d in result.diagnostics] == ["MF009"]
    assert result.diagnostics[0].span is None


def test_go_template_error_located_in_modelfile() -> None:
    text = 'FROM x\nTEMPLATE   """{{ if .System }}\n{{ .System }}\n{{ .Prompt }\n"""\n'
    diags = check_text(text).diagnostics
    assert [d.code for d in diags] == ["MF109"]
    assert (diags[0].span.line, diags[0].span.column) == (4, 12)
    assert text.splitlines()[3][11] == "}"


def test_jinja_template_error_located_in_modelfile() -> None:
    text = (
        'FROM x\nTEMPLATE """{% for m in messages %}\n{{ m.content }}\n{% endfor %}{% if x %}"""\n'
    )
    diags = check_text(text).diagnostics
    assert [d.code for d in diags] == ["MF109"]
    assert diags[0].span.line in (2, 3, 4)


def test_valid_templates_pass() -> None:
    go = 'FROM x\nTEMPLATE """{{ range .Messages }}{{ .Role }}: {{ .Content }}\n{{ end }}"""\n'
    jinja = 'FROM x\nTEMPLATE """{% for m in messages %}{{ m.content }}{% endfor %}"""\n'
    assert check_text(go).ok and check_text(jinja).ok


@pytest.mark.parametrize("name", ["renderer", "parser", "requires", "draft", "system", "model"])
def test_instruction_named_as_parameter_hints_the_instruction(name: str) -> None:
    (diag,) = check_text(f"FROM x\nPARAMETER {name} v1\n").diagnostics
    assert diag.code == "MF102"
    keyword = {"model": "FROM"}.get(name, name.upper())
    assert diag.hint == f"`{name}` is not a parameter; write `{keyword} v1` instead"


def test_invisible_value_character_is_escaped_and_named() -> None:
    (diag,) = check_text("FROM x\nPARAMETER temperature \u00a00.7\n").diagnostics
    assert diag.message == "`temperature` takes a number, not `\\u00a00.7`"
    assert "U+00A0 NO-BREAK SPACE" in diag.hint


def test_checker_refuses_unknown_keywords() -> None:
    """An IR keyword outside KEYWORDS must not be silently dropped."""
    from mfc.diagnostics.source import SourceFile
    from mfc.modelfile.check import check_parsed
    from mfc.modelfile.ir import Instruction, Modelfile
    from mfc.modelfile.parser import ParseResult

    mf = Modelfile((Instruction("FROM", "x"), Instruction("L\u0130CENSE", "MIT")), "Modelfile")
    with pytest.raises(AssertionError, match="not a Modelfile keyword"):
        check_parsed(ParseResult(mf, (), SourceFile("Modelfile", "")))
