"""Differential test: mfc's parser against an executable model of Ollama's rules.

``ollama_reference`` restates, as a small rune-by-rune reader, the behaviour
of Ollama's parser described in docs/modelfile.md (keyword then blank;
PARAMETER name / MESSAGE role then blank; a value accumulates until a line end
at which the trimmed text so far unquotes; at least one FROM). Hypothesis
feeds both readers Modelfile-like noise: where Ollama accepts, mfc must give
the same instructions and values; where it rejects, mfc must reject. The
alphabet leaves out what docs/modelfile.md lists as deliberate differences
(ARG, `tool` role, ADAPTER flags, non-printable characters).
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from mfc.modelfile import parse_text

_KEYWORDS = {
    "from", "license", "template", "system", "adapter", "draft", "renderer", "parser",
    "parameter", "message", "requires",
}  # fmt: skip
_ROLES = {"system", "user", "assistant"}
_NL = "\r\n"
_BLANK = " \t"


def _unquote(s: str) -> str | None:
    if s.startswith('"""'):
        return s[3:-3] if len(s) >= 6 and s.endswith('"""') else None
    if s.startswith('"'):
        return s[1:-1] if len(s) >= 2 and s.endswith('"') else None
    return s


def ollama_reference(text: str) -> list[tuple[str, str | None, str]] | None:
    """Instructions as (KEYWORD, name-or-role, value), or None when Ollama rejects."""
    out: list[tuple[str, str | None, str]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _BLANK or c in _NL:
            i += 1
            continue
        if c == "#":
            while i < n and text[i] not in _NL:
                i += 1
            continue
        j = i + 1  # the first character is taken as is; the rest must be letters
        while j < n and text[j].isascii() and text[j].isalpha():
            j += 1
        if j >= n or text[j] not in _BLANK:
            return None
        keyword = text[i:j].lower()
        if keyword not in _KEYWORDS:
            return None
        i = j + 1
        label = None
        if keyword in ("parameter", "message"):
            allowed = (
                (lambda ch: ch.isascii() and (ch.isalnum() or ch == "_"))
                if keyword == "parameter"
                else (lambda ch: ch.isascii() and ch.isalpha())
            )
            j = i
            while j < n and allowed(text[j]):
                j += 1
            if j >= n or text[j] not in _BLANK:
                return None
            label = text[i:j]
            if keyword == "parameter" and not label:
                return None  # Ollama: a parameter named "" -> "unknown parameter ''"
            if keyword == "message" and label not in _ROLES:
                return None
            i = j + 1
        buf: list[str] = []
        while True:
            if i >= n or text[i] in _NL:
                value = _unquote("".join(buf).strip(" \t\r\n"))
                if value is not None:
                    out.append(("FROM" if keyword == "from" else keyword.upper(), label, value))
                    break
                if i >= n:
                    return None
            buf.append(text[i])
            i += 1
    if not any(k == "FROM" for k, _, _ in out):
        return None
    return out


_pieces = st.sampled_from(
    [
        "FROM ", "from ", "PARAMETER ", "parameter\t", "MESSAGE ", "SYSTEM ", "TEMPLATE ",
        "LICENSE ", "ADAPTER ", "REQUIRES ", "DRAFT ", "RENDERER ", "PARSER ", "FROM", "FORM ",
        "user ", "system ", "assistant ", "badguy ", "temperature ", "stop ", "num_ctx ",
        "x", "a b", "1", "-", "_", ":", "'", "{{ .Prompt }}", "#", '"', '""', '"""',
        " ", "  ", "\t", "\n", "\r\n", "\r", "你好",
    ]
)  # fmt: skip


def _mfc(text: str) -> list[tuple[str, str | None, str]] | None:
    result = parse_text(text)
    rows = [(i.keyword, i.name or i.role, i.value) for i in result.instructions]
    if not result.ok or not any(k == "FROM" for k, _, _ in rows):
        return None
    return rows


@given(st.lists(_pieces, max_size=40).map("".join))
@example('FROM foo\nSYSTEM "a" b\nc"\n')
@example('FROM x\nSYSTEM """""\n"""\n')
@example("FROM x\nPARAMETER  top_k 1\n")
@example("FROM\tx\r\nMESSAGE user\thi\r")
@settings(max_examples=800, deadline=None)
def test_mfc_agrees_with_ollama_model(text: str) -> None:
    assert _mfc(text) == ollama_reference(text)


_value_pieces = st.sampled_from(
    ["x", "a b", " ", "\t", '"', '"""', "'", "#", "{{ .Prompt }}", "\n", "\r\n", "你好", "FROM y"]
)
_line = st.tuples(
    st.sampled_from(
        ["FROM ", "from\t", "SYSTEM ", "TEMPLATE ", "LICENSE ", "PARAMETER stop ",
         "PARAMETER top_k ", "MESSAGE user ", "MESSAGE assistant\t", "  ADAPTER ", "# note",
         "", "REQUIRES "]
    ),
    st.lists(_value_pieces, max_size=6).map("".join),
    st.sampled_from(["\n", "\r\n", "\r", "  \n"]),
).map("".join)  # fmt: skip


@given(st.lists(_line, min_size=1, max_size=8).map(lambda ls: "FROM base\n" + "".join(ls)))
@settings(max_examples=800, deadline=None)
def test_mfc_agrees_with_ollama_model_on_line_shaped_input(text: str) -> None:
    assert _mfc(text) == ollama_reference(text)
