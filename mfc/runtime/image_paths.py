"""Image paths typed into a prompt (`mfc run vis "what is in ./cat.png"` and the REPL).

Ollama's CLI finds them with one regular expression (``cmd/interactive.go``,
``extractFileNames``): an optional drive letter, then ``./``, ``/`` or ``\\``, then the
shortest run of characters (spaces included, line breaks not) up to ``.png``, ``.jpg``,
``.jpeg`` or ``.webp`` (any case) at a word boundary. A match that names a file becomes an
image and leaves the prompt, together with the quotes around it; escaped characters
(``my\\ cat.png``) are unescaped as Ollama's ``normalizeFilePath`` does.

Where mfc differs, on purpose:

* A path that names no file is an error (Ollama skips it silently, so a typo sends the
  prompt without its image). Because the pattern also matches prose (``this/that and
  ./cat.png`` matches from the first ``/``), a match is tried whole, then from each later
  point where a path starts a word; only a match that starts a word can be "missing", so
  URLs (``https://x/cat.png``) and fractions stay text.
* ``~/cat.png`` is expanded to the home directory (Ollama reads it as ``/cat.png``).
* ``.wav`` (Ollama's audio) is not matched: mfc has no audio models.

`find_mentions` and `extract` are pure (`extract` asks its ``is_file`` argument about the
file system), so they are tested on their own; `read_prompt_images` does the I/O.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

IMAGE_PATH = re.compile(
    r"(?:~(?=/)|[a-zA-Z]:)?(?:\./|/|\\)[^\t\n\f\r]+?\.(?i:jpg|jpeg|png|webp)\b", re.ASCII
)
"""Ollama's ``(?:[a-zA-Z]:)?(?:\\./|/|\\\\)[\\S\\\\ ]+?\\.(?i:jpg|jpeg|png|webp|wav)\\b``
(Go's ``\\s`` is ``[\\t\\n\\f\\r ]``, so its class is "anything but those four"), plus ``~/``."""

_EXTENSION = re.compile(r"\.(?i:jpg|jpeg|png|webp)\b", re.ASCII)
_PATH_START = re.compile(r"(?:~(?=/)|[a-zA-Z]:)?(?:\./|/|\\)", re.ASCII)
_OPENERS = frozenset("\"'`([{<")
_QUOTES = ("'", '"')

# normalizeFilePath's replacements, in its order (a strings.Replacer: one left-to-right pass).
_ESCAPES = {"\\" + c: c for c in " ()[]{}$&;'\\*?~"}
_ESCAPE = re.compile("|".join(re.escape(k) for k in _ESCAPES))


def unescape(raw: str) -> str:
    r"""Ollama's ``normalizeFilePath``: ``\ `` → space, ``\(`` → ``(``, ``\\`` → ``\`` …"""
    return _ESCAPE.sub(lambda m: _ESCAPES[m.group(0)], raw)


@dataclass(frozen=True, slots=True)
class Mention:
    """One match of `IMAGE_PATH` and the paths it may mean, longest first.

    ``choices`` are ``(start, end)`` spans of the prompt: the whole match, then each later
    point inside it where a path starts a word (``/b and ./c.png`` → ``./c.png``).
    ``words`` are the choices that start a word: only those can be reported missing.
    """

    choices: tuple[tuple[int, int], ...]
    words: tuple[tuple[int, int], ...]

    @property
    def span(self) -> tuple[int, int]:
        return self.choices[0]


def _starts_word(text: str, i: int) -> bool:
    if i == 0:
        return True
    before = text[i - 1]
    if before in _OPENERS:
        return True
    # A space starts a word unless it is escaped (`my\ /x.png` is one path).
    return before.isspace() and not (before == " " and i >= 2 and text[i - 2] == "\\")


def _searchable(text: str) -> list[tuple[int, int]]:
    """Each line cut after its last image extension: where `IMAGE_PATH` can match.

    A match never crosses a line break and ends at an extension, so nothing after a line's
    last extension can match; searching it anyway is what makes a backtracking engine
    quadratic (every ``/`` of a long pasted line scanning to the line's end). Go's RE2 is
    linear; this keeps Python's so.
    """
    spans: list[tuple[int, int]] = []
    line, seen = 0, 0  # the current line's start; text before `seen` has been looked at
    for ext in _EXTENSION.finditer(text):
        line = max(line, *(text.rfind(c, seen, ext.start()) + 1 for c in "\t\n\f\r"))
        seen = ext.end()
        if spans and spans[-1][1] >= line:
            spans[-1] = (spans[-1][0], ext.end())
        else:
            spans.append((line, ext.end()))
    return spans


def find_mentions(text: str) -> list[Mention]:
    """Every `IMAGE_PATH` match in ``text`` (Ollama's ``extractFileNames``), with its choices."""
    mentions = []
    found = (m for a, b in _searchable(text) for m in IMAGE_PATH.finditer(text, a, b))
    for m in found:
        start, end = m.span()
        choices = [(start, end)]
        for i in range(start + 1, end):
            if _starts_word(text, i) and _PATH_START.match(text, i, end):
                choices.append((i, end))
        words = tuple(c for c in choices if _starts_word(text, c[0]))
        mentions.append(Mention(tuple(choices), words))
    return mentions


def mention_strings(text: str) -> list[str]:
    """The matched text of each mention, as Ollama's ``extractFileNames`` returns it."""
    return [text[s:e] for s, e in (m.span for m in find_mentions(text))]


def path_of(raw: str, home: str | None = None) -> str:
    """The file a typed path names: unescaped, ``~/`` expanded (``home``, else ``$HOME``)."""
    path = unescape(raw)
    if path.startswith("~/"):
        base = home if home is not None else os.path.expanduser("~")
        path = base.rstrip("/") + path[1:]
    return path


@dataclass(frozen=True, slots=True)
class Extracted:
    """A prompt with its image paths taken out.

    ``prompt``: the text without the paths (and their quotes), stripped, as Ollama sends it;
    ``paths``: the files, in the order they appear (one image each, repeats included);
    ``missing``: paths (unescaped, expanded) typed where a word starts that name no file.
    """

    prompt: str
    paths: tuple[str, ...]
    missing: tuple[str, ...]


def extract(text: str, is_file: Callable[[str], bool], home: str | None = None) -> Extracted:
    """Take the image paths that name files out of ``text`` (Ollama's ``extractFileData``).

    For each mention the longest choice that names a file wins; a mention none of whose
    choices is a file is left in the text, and its shortest word-starting choice (the one
    least likely to carry prose) is reported in ``missing``.
    """
    cuts: list[tuple[int, int]] = []
    paths: list[str] = []
    missing: list[str] = []
    for mention in find_mentions(text):
        for start, end in mention.choices:
            path = path_of(text[start:end], home)
            if is_file(path):
                if start > 0 and end < len(text) and text[start - 1] == text[end] in _QUOTES:
                    start, end = start - 1, end + 1
                cuts.append((start, end))
                paths.append(path)
                break
        else:
            if mention.words:
                start, end = mention.words[-1]
                missing.append(path_of(text[start:end], home))
    kept, pos = [], 0
    for start, end in cuts:
        kept.append(text[pos:start])
        pos = end
    kept.append(text[pos:])
    return Extracted("".join(kept).strip(), tuple(paths), tuple(missing))


def is_command_path(line: str) -> bool:
    """A REPL line starting with ``/`` that is an image path (``/tmp/cat.png what is it``),
    not a command: Ollama's test (its first word begins a mention)."""
    words = line.split()
    return bool(words) and any(m.startswith(words[0]) for m in mention_strings(line))


# -- reading the files ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PromptImage:
    path: str  # as resolved (unescaped, ~ expanded)
    data: bytes


class ImagePathError(ValueError):
    """An image path that cannot be used; ``path`` as typed or resolved, ``reason`` why."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def read_prompt_images(
    text: str, *, check: Callable[[bytes], object] | None = None
) -> tuple[str, tuple[PromptImage, ...]]:
    """The prompt without its image paths, and each file's bytes (checked by ``check``,
    e.g. `mfc.runtime.media.check_image`, which raises `ImageError`).

    Raises `ImagePathError` for the first path that names no file, cannot be read, or is
    refused by ``check``: before any model is loaded, as nothing here needs one.
    """
    from mfc.runtime.media import ImageError

    found = extract(text, os.path.exists)  # a directory is "read" and says what it is
    if found.missing:
        raise ImagePathError(found.missing[0], "no such file")
    images = []
    for path in found.paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ImagePathError(path, exc.strerror or str(exc)) from None
        if check is not None:
            try:
                check(data)
            except ImageError as exc:
                raise ImagePathError(path, str(exc)) from None
        images.append(PromptImage(path, data))
    return found.prompt, tuple(images)


def named_files(text: str) -> Sequence[str]:
    """The image paths in ``text`` that name existing files (no reading, no errors): how a
    text-only model's prompt is checked for images it could not see."""
    return extract(text, os.path.isfile).paths


def prompt_images(text: str, *, vision: bool, model: str) -> tuple[str, tuple[PromptImage, ...]]:
    """`mfc run`'s prompt and images, or a coded diagnostic before anything loads.

    A vision model gets each named file's bytes (checked with
    `mfc.runtime.media.check_image`; MF311 for a missing, unreadable or refused file). A
    text-only model's prompt is left as typed, as Ollama's CLI leaves it, unless a path in
    it names an existing file: that image could not be seen, so it is MF312, not a silent
    answer about a picture the model never got.
    """
    from mfc.diagnostics import codes
    from mfc.runtime.media import check_image

    if not vision:
        files = named_files(text)
        if files:
            raise codes.VISION_UNSUPPORTED.error(
                f'"{model}" does not support vision (the prompt names the image `{files[0]}`)',
                hint="use a model built with a projector (`FROM` the model, then `FROM` its"
                " projector), or write the path without its leading `./` or `/` to keep it"
                " as text",
            )
        return text, ()
    try:
        return read_prompt_images(text, check=check_image)
    except ImagePathError as exc:
        where = "" if os.path.isabs(exc.path) else f" (relative to {os.getcwd()})"
        raise codes.IMAGE_FILE.error(
            f"image `{exc.path}`{where}: {exc.reason}",
            hint="give the path of a PNG, JPEG or WebP file; to keep a path in the prompt as"
            " text, write it without its leading `./` or `/`",
        ) from None
