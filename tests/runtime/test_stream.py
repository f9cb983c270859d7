"""TextStream: what a user sees is exactly the text before the first stop string."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mfc.runtime.stream import TextStream


def expected(pieces: list[bytes], stops: list[str]) -> tuple[str, bool]:
    """The rule, stated plainly: after each piece, if the text so far contains a
    stop string, the answer is the text before the earliest such occurrence."""
    data = b""
    for piece in pieces:
        data += piece
        text = data.decode("utf-8", errors="ignore")  # a split character is not there yet
        hits = [text.find(s) for s in stops if s and s in text]
        if hits:
            return text[: min(hits)], True
    return data.decode("utf-8"), False


def run(pieces: list[bytes], stops: list[str]) -> tuple[str, bool]:
    stream = TextStream(stops)
    out = ""
    for piece in pieces:
        out += stream.feed(piece)
        if stream.stopped:
            break
    out += stream.finish()
    return out, stream.stopped


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(
    text=st.text(alphabet="abcé€😀 \n<|>", max_size=40),
    stops=st.lists(st.text(alphabet="abé<|>", min_size=1, max_size=4), max_size=3),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12),
)
@example(text="def<|im_end|>ghi", stops=["<|im_end|>"], cuts=[3, 5, 7])
@example(text="aab", stops=["ab"], cuts=[1, 2])
@example(text="><<", stops=["<", "><<"], cuts=[2])  # "<" completes first
def test_output_is_text_before_first_stop(text: str, stops: list[str], cuts: list[int]) -> None:
    pieces = split(text.encode("utf-8"), cuts)
    assert run(pieces, stops) == expected(pieces, stops)


def test_split_multibyte_character_is_not_garbled() -> None:
    data = "€".encode()
    stream = TextStream()
    assert stream.feed(data[:1]) == ""
    assert stream.feed(data[1:2]) == ""
    assert stream.feed(data[2:]) == "€"


def test_holds_back_only_a_possible_stop_prefix() -> None:
    stream = TextStream(["###"])
    assert stream.feed(b"ab#") == "ab"
    assert stream.feed(b"c") == "#c"
    assert stream.feed(b"##") == ""
    assert stream.feed(b"#tail") == ""
    assert stream.stopped


@pytest.mark.parametrize("stops", [[], [""]])
def test_no_stops_streams_everything(stops: list[str]) -> None:
    stream = TextStream(stops)
    assert stream.feed(b"abc") == "abc"
    assert stream.finish() == ""


@given(
    text=st.text(alphabet="abc<|>", max_size=30),
    stops=st.lists(st.text(alphabet="ab<|>", min_size=1, max_size=3), max_size=3),
    cuts=st.lists(st.integers(min_value=0, max_value=100), max_size=8),
)
def test_matched_is_a_stop_string_that_ends_where_the_text_was_cut(
    text: str, stops: list[str], cuts: list[int]
) -> None:
    """`matched` names the stop string found at the cut (Anthropic's `stop_sequence`)."""
    stream = TextStream(stops)
    out = ""
    for piece in split(text.encode(), cuts):
        out += stream.feed(piece)
        if stream.stopped:
            break
    out += stream.finish()
    if stream.stopped:
        assert stream.matched in stops
        assert text[len(out) :].startswith(stream.matched)
    else:
        assert stream.matched == ""
