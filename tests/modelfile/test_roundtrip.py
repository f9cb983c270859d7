"""Properties: parse(format(ir)) == ir, format is idempotent, parsing is total."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mfc.modelfile import format_modelfile, parse_bytes, parse_text, quote_value
from mfc.modelfile.format import UnrepresentableValue
from mfc.modelfile.ir import ROLES, Comment, Flag, Instruction, Modelfile

_chars = st.characters(blacklist_categories=("Cs",))
_pieces = st.one_of(_chars, st.sampled_from(['"', '"""', " ", "\t", "\n", "\r\n", "\r", "#"]))
_text = st.lists(_pieces, max_size=30).map("".join)
_name = st.from_regex(r"[A-Za-z0-9_]{1,12}", fullmatch=True)
_simple_kw = st.sampled_from(
    ["FROM", "TEMPLATE", "SYSTEM", "LICENSE", "REQUIRES", "DRAFT", "RENDERER", "PARSER", "ARG"]
)


def _representable(value: str) -> bool:
    try:
        quote_value(value)
    except UnrepresentableValue:
        return False
    return True


_value = _text.filter(_representable)


@st.composite
def instructions(draw) -> Instruction:
    kind = draw(st.sampled_from(["simple", "parameter", "message", "adapter"]))
    value = draw(_value)
    if kind == "parameter":
        return Instruction("PARAMETER", value, name=draw(_name))
    if kind == "message":
        return Instruction("MESSAGE", value, role=draw(st.sampled_from(ROLES)))
    if kind == "adapter":
        flags = draw(
            st.lists(
                st.builds(
                    Flag,
                    st.from_regex(r"[a-z][a-z-]{0,8}", fullmatch=True),
                    st.one_of(st.none(), st.from_regex(r"[0-9.]{1,5}", fullmatch=True)),
                ),
                max_size=2,
            )
        )
        return Instruction("ADAPTER", value, flags=tuple(flags))
    return Instruction(draw(_simple_kw), value)


comments = st.from_regex(r"#[^\r\n]*", fullmatch=True).map(lambda t: Comment(t.rstrip(" \t")))
modelfiles = st.lists(st.one_of(instructions(), comments), max_size=8).map(
    lambda items: Modelfile(tuple(items))
)


@given(modelfiles)
@example(Modelfile((Instruction("SYSTEM", '""'),)))
@example(Modelfile((Instruction("SYSTEM", 'say "hi"'),)))
@example(Modelfile((Instruction("SYSTEM", '"\n'),)))
@example(Modelfile((Instruction("ADAPTER", "--x y"),)))
@example(Modelfile((Instruction("SYSTEM", ""), Instruction("FROM", " a\r"))))
@settings(max_examples=300, suppress_health_check=[HealthCheck.filter_too_much])
def test_parse_format_roundtrip(ir: Modelfile) -> None:
    text = format_modelfile(ir)
    result = parse_text(text)
    assert result.diagnostics == ()
    assert result.modelfile == ir
    assert format_modelfile(result.modelfile) == text  # idempotent


_noise = st.one_of(
    _chars,
    st.sampled_from(['"""', '"', "\n", "\r", "FROM ", "PARAMETER ", "MESSAGE ", "#", "\t", "ARG "]),
)


@given(st.lists(_noise, max_size=80).map("".join))
@settings(max_examples=300)
def test_random_text_never_raises(text: str) -> None:
    result = parse_text(text)
    for diag in result.diagnostics:
        assert diag.code.startswith("MF0") and diag.code != "MF000"
    if result.ok:  # what parsed formats, and the format parses to the same IR
        try:
            formatted = format_modelfile(result.modelfile)
        except UnrepresentableValue:
            return
        assert parse_text(formatted).modelfile == result.modelfile


@given(st.binary(max_size=200))
@settings(max_examples=200)
def test_random_bytes_never_raise(data: bytes) -> None:
    parse_bytes(data)


@pytest.mark.parametrize(
    "value,expected",
    [
        ("foo", "foo"),
        ("a b", "a b"),
        ("", '""'),
        (" x", '" x"'),
        ("x\t", '"x\t"'),
        ("a\nb", '"a\nb"'),
        ('say "hi"', 'say "hi"'),
        ('"q"', '""""q""""'),
        ('a\n"b"', '"""a\n"b""""'),
        ('x"\ny', '"""x"\ny"""'),
    ],
)
def test_quote_value(value: str, expected: str) -> None:
    assert quote_value(value) == expected


def test_unrepresentable_value_raises() -> None:
    with pytest.raises(UnrepresentableValue):
        quote_value('""a"""\nb')


def test_fmt_keeps_comments_and_one_blank_line() -> None:
    text = "# base\nfrom  foo\n\n\n\n  # params\nparameter temperature   0.7\n"
    assert format_modelfile(parse_text(text).modelfile) == (
        "# base\nFROM foo\n\n# params\nPARAMETER temperature 0.7\n"
    )
