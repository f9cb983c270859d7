"""Table-driven syntax cases; many are ported from Ollama's parser/parser_test.go.

Each row: Modelfile text -> the instructions (keyword, name-or-role, value),
or the diagnostic codes it must produce. Fixing a parser bug = adding a row.
"""

from __future__ import annotations

import codecs

import pytest

from mfc.modelfile import parse_bytes, parse_text

LLAMA3_TEMPLATE = (
    "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>"
    "{{ end }}{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}"
    "<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}"
    "<|eot_id|>"
)


def _rows(text: str) -> list[tuple[str, str | None, str]]:
    result = parse_text(text)
    assert result.ok, result.diagnostics
    return [(i.keyword, i.name or i.role, i.value) for i in result.instructions]


VALID = {
    # TestParseFileFile
    "file": (
        "\nFROM model1\nADAPTER adapter1\nLICENSE MIT\nPARAMETER param1 value1\n"
        f'PARAMETER param2 value2\nTEMPLATE """{LLAMA3_TEMPLATE}"""    \n',
        [
            ("FROM", None, "model1"),
            ("ADAPTER", None, "adapter1"),
            ("LICENSE", None, "MIT"),
            ("PARAMETER", "param1", "value1"),
            ("PARAMETER", "param2", "value2"),
            ("TEMPLATE", None, LLAMA3_TEMPLATE),
        ],
    ),
    "draft": (
        "\nFROM base\nDRAFT ./assistant\n",
        [("FROM", None, "base"), ("DRAFT", None, "./assistant")],
    ),
    # TestParseFileTrimSpace
    "trim-space": (
        '\nFROM "     model 1"\nADAPTER      adapter3\nLICENSE "MIT       "\n'
        "PARAMETER param1        value1\nPARAMETER param2    value2\n"
        f'TEMPLATE """   {LLAMA3_TEMPLATE}   """    \n',
        [
            ("FROM", None, "     model 1"),
            ("ADAPTER", None, "adapter3"),
            ("LICENSE", None, "MIT       "),
            ("PARAMETER", "param1", "value1"),
            ("PARAMETER", "param2", "value2"),
            ("TEMPLATE", None, f"   {LLAMA3_TEMPLATE}   "),
        ],
    ),
    # TestParseFileFrom
    "from-quoted-spaces": ('FROM "FOO  BAR  "', [("FROM", None, "FOO  BAR  ")]),
    "from-quoted-then-param": (
        'FROM "FOO BAR"\nPARAMETER param1 value1',
        [("FROM", None, "FOO BAR"), ("PARAMETER", "param1", "value1")],
    ),
    "from-inner-spaces": ("FROM     FOOO BAR    ", [("FROM", None, "FOOO BAR")]),
    "from-path-space": ("FROM /what/is/the path ", [("FROM", None, "/what/is/the path")]),
    "from-name": ("FROM foo", [("FROM", None, "foo")]),
    "from-path": ("FROM /path/to/model/fp16.bin", [("FROM", None, "/path/to/model/fp16.bin")]),
    "from-tag": ("FROM llama3:7b-instruct-q4_K_M", [("FROM", None, "llama3:7b-instruct-q4_K_M")]),
    "param-before-from": (
        "PARAMETER param1 value1\nFROM foo",
        [("PARAMETER", "param1", "value1"), ("FROM", None, "foo")],
    ),
    "lemonade": (
        "PARAMETER what the \nFROM lemons make lemonade ",
        [("PARAMETER", "what", "the"), ("FROM", None, "lemons make lemonade")],
    ),
    "renderer-parser": (
        "\nFROM foo\nRENDERER renderer1\nPARSER parser1\n",
        [("FROM", None, "foo"), ("RENDERER", None, "renderer1"), ("PARSER", None, "parser1")],
    ),
    # TestParseFileMessages
    "messages": (
        "\nFROM foo\nMESSAGE system You are a file parser. Always parse things.\n"
        "MESSAGE user Hey there!\nMESSAGE assistant Hello, I want to parse all the things!\n",
        [
            ("FROM", None, "foo"),
            ("MESSAGE", "system", "You are a file parser. Always parse things."),
            ("MESSAGE", "user", "Hey there!"),
            ("MESSAGE", "assistant", "Hello, I want to parse all the things!"),
        ],
    ),
    "message-no-final-newline": (
        "\nFROM foo\nMESSAGE system You are a file parser. Always parse things.",
        [
            ("FROM", None, "foo"),
            ("MESSAGE", "system", "You are a file parser. Always parse things."),
        ],
    ),
    "message-multiline": (
        '\nFROM foo\nMESSAGE system """\n'
        'You are a multiline file parser. Always parse things.\n"""\n\t\t\t',
        [
            ("FROM", None, "foo"),
            ("MESSAGE", "system", "\nYou are a multiline file parser. Always parse things.\n"),
        ],
    ),
    "message-tool-role": (
        "FROM foo\nMESSAGE tool 42\n",
        [("FROM", None, "foo"), ("MESSAGE", "tool", "42")],
    ),
    # TestParseFileQuoted
    "quoted-multiline": (
        '\nFROM foo\nSYSTEM """\nThis is a\nmultiline system.\n"""\n\t\t\t',
        [("FROM", None, "foo"), ("SYSTEM", None, "\nThis is a\nmultiline system.\n")],
    ),
    "quoted-close-on-text-line": (
        '\nFROM foo\nSYSTEM """\nThis is a\nmultiline system."""\n',
        [("FROM", None, "foo"), ("SYSTEM", None, "\nThis is a\nmultiline system.")],
    ),
    "quoted-open-on-text-line": (
        '\nFROM foo\nSYSTEM """This is a\nmultiline system."""\n',
        [("FROM", None, "foo"), ("SYSTEM", None, "This is a\nmultiline system.")],
    ),
    "quoted-one-line": (
        '\nFROM foo\nSYSTEM """This is a multiline system."""\n',
        [("FROM", None, "foo"), ("SYSTEM", None, "This is a multiline system.")],
    ),
    "quoted-inner-quotes": (
        '\nFROM foo\nSYSTEM """\nThis is a multiline system with "quotes".\n"""\n',
        [("FROM", None, "foo"), ("SYSTEM", None, '\nThis is a multiline system with "quotes".\n')],
    ),
    "empty-triple": ('\nFROM foo\nSYSTEM """"""\n', [("FROM", None, "foo"), ("SYSTEM", None, "")]),
    "empty-double": ('\nFROM foo\nSYSTEM ""\n', [("FROM", None, "foo"), ("SYSTEM", None, "")]),
    "single-quote-literal": (
        '\nFROM foo\nSYSTEM "\'"\n',
        [("FROM", None, "foo"), ("SYSTEM", None, "'")],
    ),
    "quote-soup": (
        '\nFROM foo\nSYSTEM """\'\'"\'""\'""\'"\'\'\'\'\'""\'""\'"""\n',
        [("FROM", None, "foo"), ("SYSTEM", None, "''\"'\"\"'\"\"'\"'''''\"\"'\"\"'")],
    ),
    "template-at-eof": (
        '\nFROM foo\nTEMPLATE """\n{{ .Prompt }}\n"""',
        [("FROM", None, "foo"), ("TEMPLATE", None, "\n{{ .Prompt }}\n")],
    ),
    # TestParseFileParameters (a few of its map entries)
    "stop-bare": (
        "FROM foo\nPARAMETER stop ### User:\n",
        [("FROM", None, "foo"), ("PARAMETER", "stop", "### User:")],
    ),
    "stop-bare-trailing": (
        "FROM foo\nPARAMETER stop ### User: \n",
        [("FROM", None, "foo"), ("PARAMETER", "stop", "### User:")],
    ),
    "stop-quoted-space": (
        'FROM foo\nPARAMETER stop "### User: "\n',
        [("FROM", None, "foo"), ("PARAMETER", "stop", "### User: ")],
    ),
    "stop-triple-newline": (
        'FROM foo\nPARAMETER stop """### User:\n"""\n',
        [("FROM", None, "foo"), ("PARAMETER", "stop", "### User:\n")],
    ),
    "stop-special": (
        "FROM foo\nPARAMETER stop <|eot_id|>\n",
        [("FROM", None, "foo"), ("PARAMETER", "stop", "<|eot_id|>")],
    ),
    # TestParseFileComments, TestParseMultiByte
    "comment": ("\n# comment\nFROM foo\n\t", [("FROM", None, "foo")]),
    "multibyte-indented": (
        "FROM test\n\tSYSTEM 你好👋",
        [("FROM", None, "test"), ("SYSTEM", None, "你好👋")],
    ),
    # quoting rules from the issue
    "no-inline-comment": ("FROM foo # x\n", [("FROM", None, "foo # x")]),
    "hash-inside-value-line": (
        'FROM foo\nSYSTEM """\n# not a comment\n"""\n',
        [("FROM", None, "foo"), ("SYSTEM", None, "\n# not a comment\n")],
    ),
    "text-after-close-keeps-open": (
        'FROM foo\nSYSTEM "a" b\nstill "c"\n',
        [("FROM", None, "foo"), ("SYSTEM", None, 'a" b\nstill "c')],
    ),
    "case-insensitive": (
        "from foo\nParameter top_k 1\n",
        [("FROM", None, "foo"), ("PARAMETER", "top_k", "1")],
    ),
    "tab-separator": (
        "FROM\tfoo\nPARAMETER\ttop_k\t1\n",
        [("FROM", None, "foo"), ("PARAMETER", "top_k", "1")],
    ),
    "crlf": ("FROM foo\r\nSYSTEM hi\r\n", [("FROM", None, "foo"), ("SYSTEM", None, "hi")]),
    "cr-only": ("FROM foo\rSYSTEM hi\r", [("FROM", None, "foo"), ("SYSTEM", None, "hi")]),
    "crlf-inside-quotes-verbatim": (
        'FROM foo\r\nSYSTEM """a\r\nb"""\r\n',
        [("FROM", None, "foo"), ("SYSTEM", None, "a\r\nb")],
    ),
    "nbsp-kept": (
        "FROM foo\nSYSTEM a\u00a0b\u200dc\n",
        [("FROM", None, "foo"), ("SYSTEM", None, "a\u00a0b\u200dc")],
    ),
    "empty-value-after-blank": (
        "FROM foo\nSYSTEM \n",
        [("FROM", None, "foo"), ("SYSTEM", None, "")],
    ),
    "arg-extension": (
        "ARG TAG=latest\nFROM llama:${TAG}\n",
        [("ARG", None, "TAG=latest"), ("FROM", None, "llama:${TAG}")],
    ),
    "adapter-flags": (
        "FROM foo\nADAPTER --scale=0.5 ./a.gguf\n",
        [("FROM", None, "foo"), ("ADAPTER", None, "./a.gguf")],
    ),
    "parameter-system-is-a-parameter": (
        "FROM foo\nPARAMETER system x\n",
        [("FROM", None, "foo"), ("PARAMETER", "system", "x")],
    ),
    # one invisible character right before a keyword: Ollama drops it (strconv.IsPrint)
    "nbsp-before-keyword": ("\u00a0FROM foo\n", [("FROM", None, "foo")]),
    "zwsp-before-keyword": (
        "FROM foo\n\u200bSYSTEM hi\n",
        [("FROM", None, "foo"), ("SYSTEM", None, "hi")],
    ),
    "stray-bom-before-keyword": ("\ufeffFROM foo\n", [("FROM", None, "foo")]),
    "form-feed-before-keyword": (
        "FROM foo\n\x0cSYSTEM hi\n",
        [("FROM", None, "foo"), ("SYSTEM", None, "hi")],
    ),
    "blank-then-nbsp-before-keyword": ("\t\u00a0from foo\n", [("FROM", None, "foo")]),
    "missing-from-is-semantic": ("PARAMETER param1 value1", [("PARAMETER", "param1", "value1")]),
    "empty-file": ("", []),
}


@pytest.mark.parametrize("text,expected", list(VALID.values()), ids=list(VALID))
def test_valid(text: str, expected: list) -> None:
    assert _rows(text) == expected


INVALID = {
    "missing-param-value": ("\nFROM foo\nPARAMETER param1\n", ["MF002"]),
    "bad-command": ("\nFROM foo\nBADCOMMAND param1 value1\n", ["MF001"]),
    "bad-role": ("\nFROM foo\nMESSAGE badguy I'm a bad guy!\n", ["MF005"]),
    "message-no-text": ("\nFROM foo\nMESSAGE system\n", ["MF002"]),
    "message-no-text-eof": ("\nFROM foo\nMESSAGE system", ["MF002"]),
    "triple-unterminated": (
        '\nFROM foo\nSYSTEM """This is a multiline system.""\n\t\t\t',
        ["MF006"],
    ),
    "double-unterminated": ('\nFROM foo\nSYSTEM "\n\t\t\t', ["MF006"]),
    "keyword-eol": ("FROM\n", ["MF002"]),
    "keyword-eof": ("FROM foo\nSYSTEM", ["MF002"]),
    "keyword-glued": ("FROM:foo\n", ["MF003"]),
    "keyword-digit": ("FROM2 foo\n", ["MF001"]),
    "param-bad-name": ("FROM foo\nPARAMETER num-ctx 1\n", ["MF004"]),
    "param-equals": ("FROM foo\nPARAMETER temperature=1\n", ["MF004"]),
    "param-nothing": ("FROM foo\nPARAMETER \n", ["MF002"]),
    "param-extra-blank": ("FROM foo\nPARAMETER  top_k 1\n", ["MF007"]),
    "message-extra-blank": ("FROM foo\nMESSAGE  user hi\n", ["MF007"]),
    "role-upper": ("FROM foo\nMESSAGE User hi\n", ["MF005"]),
    "role-colon": ("FROM foo\nMESSAGE user: hi\n", ["MF005"]),
    "unquoted-template-body": (
        "FROM foo\nTEMPLATE {{ if .System }}\n{{ .System }}\n{{ end }}\n",
        ["MF001", "MF001", "MF001"][:2],
    ),
    "all-errors-reported": (
        "FORM foo\nPARAMTER x 1\nMESAGE user hi\n",
        ["MF001", "MF001", "MF001"],
    ),
    # keywords fold ASCII case only (Python's re.I would fold these to SYSTEM/LICENSE)
    "long-s-keyword": ("FROM foo\n\u017fYSTEM x\n", ["MF001"]),
    "dotless-i-keyword": ("FROM foo\nL\u0131CENSE MIT\n", ["MF001"]),
    "dotted-capital-i-keyword": ("FROM foo\nL\u0130CENSE MIT\n", ["MF001"]),
    "kelvin-sign-not-k": ("FROM foo\nMESSAGE user hi\n\u212aEEP x\n", ["MF001"]),
    # invisible characters Ollama rejects too
    "two-invisibles": ("\u00a0\u200bFROM foo\n", ["MF001"]),
    "invisible-then-blank": ("\u00a0 FROM foo\n", ["MF001"]),
    "invisible-before-comment": ("FROM foo\n\u00a0# x\n", ["MF001"]),
    "invisible-before-non-keyword": ("FROM foo\n\u00a0FORM x\n", ["MF001"]),
    "invisible-after-keyword": ("FROM\u00a0foo\n", ["MF003"]),
    "recovers-after-unterminated": ('FROM foo\nSYSTEM """oops\nbody line\nFROMM x\n', ["MF006"]),
}


@pytest.mark.parametrize("text,codes", list(INVALID.values()), ids=list(INVALID))
def test_invalid(text: str, codes: list[str]) -> None:
    result = parse_text(text)
    assert not result.ok
    assert [d.code for d in result.diagnostics] == codes


def test_unterminated_then_next_instruction_still_parsed() -> None:
    result = parse_text('FROM foo\nSYSTEM "oops\nbody\nPARAMETER top_k 1\nBAD x\n')
    assert [d.code for d in result.diagnostics] == ["MF006", "MF001"]
    assert [i.keyword for i in result.instructions] == ["FROM", "PARAMETER"]


@pytest.mark.parametrize(
    "encoding,bom",
    [
        ("utf-8", b""),
        ("utf-8", codecs.BOM_UTF8),
        ("utf-16-le", codecs.BOM_UTF16_LE),
        ("utf-16-be", codecs.BOM_UTF16_BE),
    ],
)
def test_encodings(encoding: str, bom: bytes) -> None:
    text = (
        "FROM bob\nPARAMETER param1 1\nPARAMETER param2 4096\nSYSTEM You are a utf16 file. 你好👋\n"
    )
    result = parse_bytes(bom + text.encode(encoding))
    assert result.ok
    assert [(i.keyword, i.name, i.value) for i in result.instructions] == [
        ("FROM", None, "bob"),
        ("PARAMETER", "param1", "1"),
        ("PARAMETER", "param2", "4096"),
        ("SYSTEM", None, "You are a utf16 file. 你好👋"),
    ]


def test_invalid_utf8_is_located_warning() -> None:
    result = parse_bytes(b"FROM foo\nSYSTEM caf\xe9\n")
    assert result.ok  # Ollama reads it (U+FFFD); mfc warns
    (diag,) = result.diagnostics
    assert (diag.code, diag.span.line, diag.span.column) == ("MF008", 2, 11)
    assert result.instructions[1].value == "caf\ufffd"


def test_spans_count_true_lines_with_crlf() -> None:
    result = parse_text("FROM foo\r\n\r\nPARAMETER x\r\n")
    (diag,) = result.diagnostics
    assert (diag.span.line, diag.span.column) == (3, 11)


def test_value_span_and_offset_point_inside_quotes() -> None:
    text = 'FROM foo\nSYSTEM   """abc"""\n'
    inst = parse_text(text).instructions[1]
    assert text[inst.value_offset : inst.value_offset + 3] == "abc"
    assert (inst.value_span.line, inst.value_span.column) == (2, 10)


def test_unterminated_body_with_hash_lines_is_not_reported() -> None:
    text = 'FROM foo\nSYSTEM """You are a bot.\n# Rules\nBe brief.\n\nPARAMETER top_k 1\nBAD x\n'
    result = parse_text(text)
    assert [(d.code, d.span.line) for d in result.diagnostics] == [("MF006", 2), ("MF001", 7)]
    assert [i.keyword for i in result.instructions] == ["FROM", "PARAMETER"]
    assert len(result.modelfile.items) == 2  # the `# Rules` body line is not a comment item


def test_invisible_before_keyword_warns_at_the_character() -> None:
    result = parse_text("FROM foo\n  \u00a0SYSTEM hi\n")
    (diag,) = result.diagnostics
    assert (diag.code, diag.severity.value, diag.span.line, diag.span.column) == (
        "MF010",
        "warning",
        2,
        3,
    )
    assert "U+00A0 NO-BREAK SPACE" in diag.message
    assert result.instructions[1].keyword_span.column == 4


@pytest.mark.parametrize(
    "text,named",
    [
        ("\u00a0 FROM foo\n", "U+00A0 NO-BREAK SPACE"),
        ("\u200b\u200bFROM foo\n", "U+200B ZERO WIDTH SPACE"),
        ("\x0c# comment\n", "U+000C FORM FEED"),
    ],
)
def test_rejected_invisible_start_is_named(text: str, named: str) -> None:
    (diag,) = parse_text(text).diagnostics
    assert diag.code == "MF001"
    assert diag.message == f"line starts with invisible {named}"
    assert diag.hint.startswith("delete")


@pytest.mark.parametrize(
    "text,hint",
    [
        ("\u017fYSTEM x\n", "did you mean `SYSTEM`? (`\u017f` is U+017F LATIN SMALL LETTER LONG S"),
        ("L\u0130CENSE MIT\n", "did you mean `LICENSE`? (`\u0130` is U+0130 LATIN CAPITAL"),
    ],
)
def test_lookalike_keyword_hint_names_the_letter(text: str, hint: str) -> None:
    (diag,) = parse_text(text).diagnostics
    assert diag.code == "MF001"
    assert diag.hint.startswith(hint)


@pytest.mark.parametrize(
    "text,hint",
    [
        ("FROM:llama3\n", "write `FROM llama3`"),
        ("PARAMETER=temperature 1\n", "write `PARAMETER temperature 1`"),
        ('SYSTEM"hi"\n', 'write `SYSTEM "hi"`'),
    ],
)
def test_missing_separator_hint_is_a_valid_line(text: str, hint: str) -> None:
    (diag,) = parse_text(text).diagnostics
    assert (diag.code, diag.hint) == ("MF003", hint)
    fixed = hint.removeprefix("write `").removesuffix("`")
    assert parse_text(fixed + "\n").ok


def test_invisible_terminal_is_gos_unprintable_set() -> None:
    """The grammar's INVISIBLE class = what Go's strconv.IsPrint rejects (assigned code points)."""
    import re
    import unicodedata

    from mfc.modelfile.parser import grammar_text

    line = next(x for x in grammar_text().splitlines() if x.startswith("INVISIBLE"))
    char_class = re.compile(line[line.index("/[") + 1 : line.index("](?=") + 1])
    for code in range(0x110000):
        ch = chr(code)
        category = unicodedata.category(ch)
        if category == "Cn" or ch in " \t\r\n":
            continue
        unprintable = category in ("Cc", "Cf", "Co", "Cs", "Zs", "Zl", "Zp")
        assert bool(char_class.match(ch)) == unprintable, f"U+{code:04X} {category}"


@pytest.mark.parametrize(
    "text,code,message,hint",
    [
        (
            "PARAMETER \u00a0top_k 1\n",
            "MF004",
            "invalid parameter name `\\u00a0top_k`",
            "delete the invisible U+00A0 NO-BREAK SPACE in `\\u00a0top_k`",
        ),
        (
            "MESSAGE \u200buser hi\n",
            "MF005",
            "invalid message role `\\u200buser`",
            "delete the invisible U+200B ZERO WIDTH SPACE in `\\u200buser`",
        ),
        (
            "\u2060FORM x\n",
            "MF001",
            "line starts with invisible U+2060 WORD JOINER",
            "delete it; then did you mean `FROM`?",
        ),
    ],
)
def test_invisible_characters_are_escaped_and_named(
    text: str, code: str, message: str, hint: str
) -> None:
    (diag,) = parse_text(text).diagnostics
    assert (diag.code, diag.message, diag.hint) == (code, message, hint)
