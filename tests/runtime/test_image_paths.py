"""Image paths in a prompt (mfc.runtime.image_paths): Ollama's own examples, then properties."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from mfc.runtime.image_paths import (
    IMAGE_PATH,
    ImagePathError,
    extract,
    is_command_path,
    mention_strings,
    path_of,
    read_prompt_images,
    unescape,
)
from mfc.runtime.media import check_image

# -- Ollama's cmd/interactive_test.go, TestExtractFilenames ----------------------------------

UNIX = r""" some preamble 
 ./relative\ path/one.png inbetween1 ./not a valid two.jpg inbetween2 ./1.svg
/unescaped space /three.jpeg inbetween3 /valid\ path/dir/four.png "./quoted with spaces/five.JPG
/unescaped space /six.webp inbetween6 /valid\ path/dir/seven.WEBP"""  # noqa: W291 (Ollama's text)

WINDOWS = r""" some preamble
 c:/users/jdoe/one.png inbetween1 c:/program files/someplace/two.jpg inbetween2 
 /absolute/nospace/three.jpeg inbetween3 /absolute/with space/four.png inbetween4
./relative\ path/five.JPG inbetween5 "./relative with/spaces/six.png inbetween6
d:\path with\spaces\seven.JPEG inbetween7 c:\users\jdoe\eight.png inbetween8 
 d:\program files\someplace\nine.png inbetween9 "E:\program files\someplace\ten.PNG
c:/users/jdoe/eleven.webp inbetween11 c:/program files/someplace/twelve.WebP inbetween12
d:\path with\spaces\thirteen.WEBP some ending
"""  # noqa: W291


def test_ollama_unix_paths() -> None:
    res = mention_strings(UNIX)
    assert len(res) == 7
    names = ["one.png", "two.jpg", "three.jpeg", "four.png", "five.JPG", "six.webp", "seven.WEBP"]
    for found, name in zip(res, names, strict=True):
        assert name in found
    assert '"' not in res[4]
    assert "inbetween1" not in res
    assert "./1.svg" not in res
    # The exact matches (Go's leftmost-first regexp; Python's gives the same):
    assert res == [
        r"./relative\ path/one.png",
        "./not a valid two.jpg",
        "/unescaped space /three.jpeg",
        r"/valid\ path/dir/four.png",
        "./quoted with spaces/five.JPG",
        "/unescaped space /six.webp",
        r"/valid\ path/dir/seven.WEBP",
    ]


def test_ollama_windows_paths() -> None:
    res = mention_strings(WINDOWS)
    assert len(res) == 13
    assert "inbetween2" not in res
    drives = ["c:", "c:", None, None, None, None, "d:", "c:", "d:", "E:", "c:", "c:", "d:"]
    names = ["one", "two", "three", "four", "five", "six", "seven"]
    names += ["eight", "nine", "ten", "eleven", "twelve", "thirteen"]
    for found, drive, name in zip(res, drives, names, strict=True):
        assert name + "." in found
        if drive:
            assert found.startswith(drive)


def test_ollama_quoted_path_is_removed_with_its_quotes(tmp_path: Path) -> None:
    """TestExtractFileDataRemovesQuotedFilepath (a JPEG header that Ollama only sniffs; mfc
    decodes images, so the file here is a real PNG)."""
    fp = tmp_path / "img.jpg"
    Image.new("RGB", (4, 4), (255, 0, 0)).save(fp, format="JPEG")
    cleaned, imgs = read_prompt_images(f"before '{fp}' after", check=check_image)
    assert [i.data for i in imgs] == [fp.read_bytes()]
    assert cleaned == "before  after"


# -- mfc's choices ---------------------------------------------------------------------------


def files(*names: str):
    return lambda path: path in names


def test_path_is_removed_and_text_stripped() -> None:
    got = extract("what is in ./cat.png", files("./cat.png"))
    assert (got.prompt, got.paths, got.missing) == ("what is in", ("./cat.png",), ())


def test_double_quotes_and_escaped_spaces() -> None:
    got = extract('look "./my pics/a.PNG" and ./b\\ c.jpeg', files("./my pics/a.PNG", "./b c.jpeg"))
    assert got.paths == ("./my pics/a.PNG", "./b c.jpeg")
    assert got.prompt == "look  and"


def test_prose_before_a_path_is_not_part_of_it() -> None:
    # The pattern matches from the first `/` (`/that with ./cat.png`); the file is the tail.
    got = extract("compare this/that with ./cat.png please", files("./cat.png"))
    assert got.prompt == "compare this/that with  please"
    assert got.paths == ("./cat.png",)


def test_missing_names_the_word_that_looks_like_a_path() -> None:
    got = extract("/unescaped space /three.jpeg and x", files())
    assert got.missing == ("/three.jpeg",)
    assert got.prompt == "/unescaped space /three.jpeg and x"  # left as typed


def test_urls_and_mid_word_slashes_stay_text() -> None:
    text = "see https://example.com/cat.png and 3/4.png and file:///tmp/a.jpg"
    got = extract(text, files())
    assert got == extract(text, files()) and got.missing == () and got.prompt == text


def test_tilde_is_the_home_directory() -> None:
    got = extract("~/cat.png hi", files("/home/u/cat.png"), home="/home/u")
    assert got.paths == ("/home/u/cat.png",) and got.prompt == "hi"
    assert path_of("~/x.png", home="/h/") == "/h/x.png"
    assert path_of("a~/x.png", home="/h") == "a~/x.png"


def test_wav_and_other_extensions_are_text() -> None:
    assert mention_strings("./a.wav ./b.gif ./c.pngx ./d.svg") == []


def test_a_repeated_path_is_two_images() -> None:
    got = extract("./a.png vs ./a.png", files("./a.png"))
    assert got.paths == ("./a.png", "./a.png") and got.prompt == "vs"


def test_unescape_is_ollamas_normalize_file_path() -> None:
    escaped = r"a\ b\(c\)\[d\]\{e\}\$f\&g\;h\'i\\j\*k\?l\~m"
    assert unescape(escaped) == r"a b(c)[d]{e}$f&g;h'i\j*k?l~m"
    assert unescape(r"\\ ") == "\\ "  # one pass, left to right: `\\` first, then a space


def test_command_lines() -> None:
    assert is_command_path("/tmp/cat.png what is this")
    assert is_command_path("/tmp/my cat.png")
    assert not is_command_path("/set parameter x")
    assert not is_command_path("/show info")


def test_read_errors(tmp_path: Path) -> None:
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    with pytest.raises(ImagePathError) as info:
        read_prompt_images(f"what is {bad}", check=check_image)
    assert info.value.path == str(bad) and "not an image mfc can read" in info.value.reason
    with pytest.raises(ImagePathError) as info:
        read_prompt_images(f"what is {tmp_path}/none.png", check=check_image)
    assert info.value.reason == "no such file"
    folder = tmp_path / "dir.png"
    folder.mkdir()
    with pytest.raises(ImagePathError, match="Is a directory"):
        read_prompt_images(f"x {folder}", check=check_image)


# -- properties ------------------------------------------------------------------------------

SEGMENT = st.text(alphabet="abcXYZ019_-", min_size=1, max_size=6)
EXT = st.sampled_from(["png", "PNG", "jpg", "Jpeg", "webp", "WEBP"])
WORDS = st.lists(st.text(alphabet="abc xyz,?!", min_size=0, max_size=8), min_size=1, max_size=4)


@st.composite
def paths(draw: st.DrawFn) -> str:
    start = draw(st.sampled_from(["./", "/", "/tmp/", "./x/", "~/"]))
    parts = draw(st.lists(SEGMENT, min_size=1, max_size=3))
    return start + "/".join(parts) + "." + draw(EXT)


@given(before=WORDS, path=paths(), after=WORDS, quote=st.sampled_from(["", "'", '"']))
def test_an_existing_path_anywhere_becomes_an_image(
    before: list[str], path: str, after: list[str], quote: str
) -> None:
    head, tail = " ".join(before), " ".join(after)
    text = f"{head} {quote}{path}{quote} {tail}"
    got = extract(text, files(path_of(path, home="/h")), home="/h")
    assert got.paths == (path_of(path, home="/h"),)
    assert got.missing == ()
    assert got.prompt == f"{head}  {tail}".strip()


@given(text=st.text(max_size=60))
def test_without_files_the_text_is_unchanged(text: str) -> None:
    got = extract(text, files())
    assert got.paths == () and got.prompt == text.strip()
    for missing in got.missing:  # every reported path is one the pattern found in the text
        assert re.search(r"\.(?i:jpg|jpeg|png|webp)$", missing)


@given(text=st.text(max_size=60))
def test_every_mention_is_a_substring_ending_in_an_image_extension(text: str) -> None:
    for found in mention_strings(text):
        assert found in text
        assert "\n" not in found and "\r" not in found and "\t" not in found
        assert found.lower().rsplit(".", 1)[1] in ("jpg", "jpeg", "png", "webp")


@given(text=st.text(max_size=60).filter(lambda t: not t.endswith("\\")), path=paths())
def test_a_path_after_any_text_is_found(text: str, path: str) -> None:
    full = f"{text} {path}"
    got = extract(full, files(path_of(path, home="/h")), home="/h")
    assert len(got.prompt) <= len(full)
    assert path_of(path, home="/h") in got.paths


PATHY = st.text(alphabet="ab/.\\ \t\n'\"~C:pngjwebPNG", max_size=80)


@given(text=PATHY)
def test_the_linear_search_finds_what_the_plain_pattern_finds(text: str) -> None:
    """find_mentions searches only up to each line's last extension: the same matches."""
    assert mention_strings(text) == [m.group(0) for m in IMAGE_PATH.finditer(text)]


def test_a_long_pasted_line_is_searched_in_linear_time() -> None:
    # Every `/` after the last extension would scan to the line's end: 10^10 steps unguarded.
    text = "./a.png " + "x/" * 100_000 + "\n" + "/b.png " * 10_000 + "y/" * 100_000
    found = mention_strings(text)
    assert found[0] == "./a.png" and found[1:] == ["/b.png"] * 10_000
