"""Model names: Ollama's grammar and defaults, case-insensitive matching, never a path escape."""

from __future__ import annotations

import os
from pathlib import PurePosixPath

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mfc.store.names import InvalidNameError, ModelName, parse_name, parse_ref

VALID = [
    # text, (host, namespace, model, tag), display
    ("counter", ("registry.ollama.ai", "library", "counter", "latest"), "counter:latest"),
    ("counter:f16", ("registry.ollama.ai", "library", "counter", "f16"), "counter:f16"),
    ("me/counter", ("registry.ollama.ai", "me", "counter", "latest"), "me/counter:latest"),
    ("me/counter:v1.2", ("registry.ollama.ai", "me", "counter", "v1.2"), "me/counter:v1.2"),
    (
        "localhost:5000/me/counter:x",
        ("localhost:5000", "me", "counter", "x"),
        "localhost:5000/me/counter:x",
    ),
    (
        "example.com/library/m",
        ("example.com", "library", "m", "latest"),
        "example.com/library/m:latest",
    ),
    ("registry.ollama.ai/library/llama3.2:3b", None, "llama3.2:3b"),
    ("Llama3:Latest", ("registry.ollama.ai", "library", "Llama3", "Latest"), "Llama3:Latest"),
    ("_x/_y:_z", ("registry.ollama.ai", "_x", "_y", "_z"), "_x/_y:_z"),
    ("a-b_c.d", ("registry.ollama.ai", "library", "a-b_c.d", "latest"), "a-b_c.d:latest"),
    ("m:" + "t" * 80, None, "m:" + "t" * 80),
    ("h" * 350 + "/n/m", None, "h" * 350 + "/n/m:latest"),
]

INVALID = [
    # text, words the message must contain
    ("", "empty"),
    ("..", "model `..`"),
    ("../../etc/passwd", "parts"),
    ("../x", "namespace `..`"),
    ("ns/..", "model `..`"),
    ("x:..", "tag `..`"),
    ("/etc/passwd", "absolute path"),
    ("a/b/c/d", "4 `/`-separated parts"),
    ("a//b", "namespace is empty"),
    ("counter:", "tag is empty"),
    (":tag", "model is empty"),
    ("ns.x/model", "namespace `ns.x`"),
    ("host:1/ns:2/model", "namespace `ns:2`"),
    ("-model", "model `-model`"),
    (".hidden", "model `.hidden`"),
    ("mo del", "whitespace"),
    ("nul\x00byte", "NUL"),
    ("back\\slash", "NUL, `\\`"),
    ("m" * 81, "81 characters long (at most 80)"),
    ("m:" + "t" * 81, "tag is 81 characters"),
    ("h" * 351 + "/n/m", "host is 351"),
    ("model@sha256:abc", "`@`"),
    ("model/with:colon/x", "namespace `with:colon`"),
]


@pytest.mark.parametrize(("text", "parts", "display"), VALID, ids=[v[0][:40] for v in VALID])
def test_valid_names(text: str, parts: tuple[str, ...] | None, display: str) -> None:
    name = parse_name(text)
    if parts is not None:
        assert name.manifest_parts == parts
    assert name.display == display
    assert parse_name(name.display) == name
    assert parse_name(str(name)) == name


@pytest.mark.parametrize(("text", "words"), INVALID, ids=[repr(i[0])[:40] for i in INVALID])
def test_invalid_names(text: str, words: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        parse_name(text)
    assert words in str(info.value)
    assert isinstance(info.value, ValueError)


def test_matching_is_case_insensitive_but_case_is_kept() -> None:
    a, b = parse_name("Me/Counter:F16"), parse_name("me/counter:f16")
    assert a != b
    assert a.matches(b)
    assert a.key == b.key
    assert a.display == "Me/Counter:F16"
    assert parse_name("REGISTRY.OLLAMA.AI/LIBRARY/x").display == "x:latest"


def test_parse_ref_splits_digests() -> None:
    hexd = "a" * 64
    assert parse_ref("counter") == (parse_name("counter"), None)
    assert parse_ref(f"counter:f16@sha256:{hexd}") == (parse_name("counter:f16"), f"sha256:{hexd}")
    assert parse_ref(f"@sha256:{hexd}") == (None, f"sha256:{hexd}")
    with pytest.raises(InvalidNameError, match="64 lowercase hex"):
        parse_ref("counter@sha256:abc")
    with pytest.raises(InvalidNameError, match="64 lowercase hex"):
        parse_ref("counter@sha256:" + "A" * 64)


_ALPHABET = st.sampled_from([*"aZ09_-.:/@\\ \x00", "..", "/..", "../", "~", "é", "\n"])


@given(st.lists(_ALPHABET, max_size=24).map("".join))
@example("../../../etc/passwd")
@example("a/../../b")
@example("./x")
@example("x/./y")
@example("h.../n/m")
def test_no_valid_name_escapes_the_store(text: str) -> None:
    try:
        name = parse_name(text)
    except InvalidNameError:
        return
    parts = name.manifest_parts
    assert len(parts) == 4
    for part in parts:
        assert part not in ("", ".", "..")
        assert "/" not in part and "\x00" not in part and "\\" not in part
    root = PurePosixPath("/store/manifests")
    joined = os.path.normpath(root.joinpath(*parts).as_posix())
    assert joined.startswith(str(root) + "/")
    assert len(PurePosixPath(joined).relative_to(root).parts) == 4
    # Round trips: the shortest and the full form name the same model.
    assert parse_name(name.display) == name
    assert parse_name(str(name)) == name


@given(st.text(max_size=30))
def test_parse_is_total(text: str) -> None:
    """Any text gives a name or an InvalidNameError, never another exception."""
    try:
        assert isinstance(parse_name(text), ModelName)
    except InvalidNameError as exc:
        assert str(exc)
