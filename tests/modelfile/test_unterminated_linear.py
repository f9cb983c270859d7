"""Unterminated quotes lex in linear time, into the same tokens as plain Lark.

A quoted value that never closes used to make its regex scan to the end of
the text, once per such value: quadratic. The parser bounds those scans to
the value's own line. These tests count the characters the lexer may scan
(no timing) and compare trees with an unmodified Lark parser.
"""

from __future__ import annotations

import pytest
from lark import Lark
from lark.lexer import Scanner

from mfc.modelfile import parse_text
from mfc.modelfile.parser import _lark, grammar_text


@pytest.fixture
def quote_scan_budget(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Characters offered to the lexer's regexes at every position that starts with `"`."""
    offered: list[int] = []
    real = Scanner.match

    def counting(self, text, pos):
        if text.text[pos] == '"':
            offered.append(text.end - pos)
        return real(self, text, pos)

    monkeypatch.setattr(Scanner, "match", counting)
    return offered


@pytest.mark.parametrize("opener", ['"', '"""'])
def test_4k_unterminated_values_scan_linearly(opener: str, quote_scan_budget) -> None:
    lines = [f"SYSTEM {opener}unterminated value number {i}\n" for i in range(4000)]
    text = "FROM x\n" + "".join(lines) + 'PARAMETER stop "a"\n' * (opener == '"""')
    result = parse_text(text)
    assert [d.code for d in result.diagnostics] == ["MF006"] * 4000
    assert len(quote_scan_budget) >= 4000
    # Linear: each value may scan its own line. Unbounded, the sum is ~ lines² / 2 * line length.
    assert sum(quote_scan_budget) < 2 * len(text)


CASES = [
    'FROM x\nSYSTEM "a\nSYSTEM """b\nSYSTEM "c"\n',
    'FROM x\nSYSTEM """a\nb"\nSYSTEM "c\n',
    'FROM x\nSYSTEM """a\n"\nSYSTEM """b"""\nSYSTEM "c\n',
    'FROM x\nSYSTEM """"\nSYSTEM ""\nSYSTEM """""" \nSYSTEM "\n',
    'SYSTEM "a" b\nstill "c"  \r\nSYSTEM """x\r"""\rMESSAGE user "q\n',
    '"a\nFROM "x\nPARAMETER stop "\nMESSAGE user """\n',
]


@pytest.mark.parametrize("text", CASES)
def test_same_tree_as_plain_lark(text: str) -> None:
    plain = Lark(grammar_text(), parser="lalr", lexer="contextual", maybe_placeholders=False)
    assert _lark().parse(text) == plain.parse(text)
