"""Modelfile text -> syntax IR + diagnostics. Never raises for bad input.

The syntax lives in the package data file ``mfc/_data/modelfile.lark`` (Lark,
LALR; ``grammar/modelfile.lark`` in the checkout is a symlink to it). That grammar is
total — lines Ollama rejects match explicit error productions — so parsing
never stops early; the lowering below turns each error production into a
located diagnostic and goes on with the next line, and every error of a file
is reported in one run.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import os
import re
import sys
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import lark
from lark import Lark, Token, Transformer, Tree
from lark.exceptions import LarkError, UnexpectedInput
from lark.lexer import BasicLexer, ContextualLexer
from lark.utils import TextSlice

from mfc.diagnostics import codes
from mfc.diagnostics.diagnostic import Diagnostic, has_errors
from mfc.diagnostics.source import SourceFile
from mfc.modelfile import chars
from mfc.modelfile.ir import KEYWORDS, ROLES, Comment, Flag, Instruction, Item, Modelfile, Quote

GRAMMAR_NAME = "modelfile.lark"


def grammar_text() -> str:
    """The grammar, always from the installed package (never from a source checkout)."""
    data = resources.files("mfc").joinpath("_data").joinpath(GRAMMAR_NAME)
    return data.read_text(encoding="utf-8")


_LARK_OPTIONS = {"parser": "lalr", "lexer": "contextual", "maybe_placeholders": False}


@functools.cache
def _lark() -> Lark:
    """The parser, from a per-user cache of the analysed grammar when one is usable.

    Building the LALR tables takes ~35 ms of every `mfc` start; loading them
    takes ~4 ms. The cache file's name holds a hash of the grammar, Lark's and
    Python's versions, so a stale file is never read; it lives in the user's
    own cache directory (it is a pickle: never read one from a shared /tmp).
    """
    text = grammar_text()
    plugins = {"ContextualLexer": _ModelfileLexer}
    path = _cache_file(text)
    if path is None:
        return Lark(text, **_LARK_OPTIONS, _plugins=plugins)
    if path.is_file():
        return Lark(text, **_LARK_OPTIONS, _plugins=plugins, cache=str(path))
    # Lark writes its cache in place; write a private temp file and rename it, atomically.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    parser = Lark(text, **_LARK_OPTIONS, _plugins=plugins, cache=str(tmp))
    try:
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return parser


def _cache_file(grammar: str) -> Path | None:
    if os.environ.get("MFC_NO_GRAMMAR_CACHE"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = "\0".join((grammar, repr(_LARK_OPTIONS), lark.__version__, sys.version))
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    directory = Path(base) / "mfc"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None
    return directory / f"modelfile-grammar-{digest}.lark"


# -- linear time on unterminated quotes ------------------------------------------------------------
# TRIPLE_QUOTED and QUOTED end at the first later line that ends with their delimiter; when no
# such line exists, the regex scans to the end of the text before it fails, once per unterminated
# value: quadratic (4k such lines took 10 s). One pass per text finds the last closing position
# of each kind; a quote opened after it cannot close, so its match is bounded to its own line,
# where only the one-line UNTERMINATED (or BAD_*) terminal can match — the same token as before.
_DQ_CLOSE = re.compile(r'"(?=[ \t]*(?:\r|\n|\Z))')
_TQ_CLOSE = re.compile(r'"""(?=[ \t]*(?:\r|\n|\Z))')
_LINE_END_CHARS = re.compile(r"[\r\n]")


@dataclass(frozen=True, slots=True)
class _Closes:
    text: str
    last_dq: int  # position of the last `"` that can close a "…" value (-1: none)
    last_tq: int  # start of the last `"""` that can close a """…""" value (-1: none)

    @classmethod
    def of(cls, text: str) -> _Closes:
        last_dq = last_tq = -1
        for m in _DQ_CLOSE.finditer(text):
            last_dq = m.start()
        for m in _TQ_CLOSE.finditer(text):
            last_tq = m.start()
        return cls(text, last_dq, last_tq)


_local = threading.local()  # .closes: _Closes of the text this thread is lexing


class _QuoteBoundedLexer(BasicLexer):
    def __init__(self, conf, comparator=None) -> None:
        super().__init__(conf, comparator)
        if not any(t.name in ("QUOTED", "TRIPLE_QUOTED") for t in self.terminals):
            self.match = super().match  # type: ignore[method-assign]  # no quotes here: no check

    def match(self, text: TextSlice, pos: int):
        src = text.text
        if src[pos] != '"':
            return self.scanner.match(text, pos)
        closes = getattr(_local, "closes", None)
        if closes is None or closes.text is not src:
            closes = _local.closes = _Closes.of(src)
        if src.startswith('"""', pos):
            can_close = closes.last_tq >= pos + 3
        else:
            can_close = closes.last_dq >= pos + 1
        if can_close:
            return self.scanner.match(text, pos)
        eol = _LINE_END_CHARS.search(src, pos, text.end)
        end = eol.start() if eol else text.end
        return self.scanner.match(TextSlice(src, text.start, end), pos)


class _ModelfileLexer(ContextualLexer):
    BasicLexer = _QuoteBoundedLexer


@dataclass(frozen=True, slots=True)
class ParseResult:
    modelfile: Modelfile
    diagnostics: tuple[Diagnostic, ...]
    source: SourceFile

    @property
    def ok(self) -> bool:
        return not has_errors(self.diagnostics)

    @property
    def instructions(self) -> tuple[Instruction, ...]:
        return self.modelfile.instructions


def parse_text(text: str, filename: str = "Modelfile") -> ParseResult:
    """Parse decoded Modelfile text (line ends LF, CRLF or CR)."""
    return _parse(SourceFile(filename, text), ())


def parse_bytes(data: bytes, filename: str = "Modelfile") -> ParseResult:
    """Parse raw bytes: UTF-8 (BOM skipped), or UTF-16 LE/BE when a BOM says so."""
    text, problems = decode(data, filename)
    return _parse(SourceFile(filename, text), problems)


def decode(data: bytes, filename: str) -> tuple[str, tuple[Diagnostic, ...]]:
    """Decode like Ollama (invalid bytes become U+FFFD) but say so, located."""
    encoding = "utf-8"
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith(b"\xff\xfe"):
        data, encoding = data[2:], "utf-16-le"
    elif data.startswith(b"\xfe\xff"):
        data, encoding = data[2:], "utf-16-be"
    try:
        return data.decode(encoding), ()
    except UnicodeDecodeError as exc:
        text = data.decode(encoding, errors="replace")
        offset = len(data[: exc.start].decode(encoding, errors="replace"))
        source = SourceFile(filename, text)
        diag = codes.INVALID_ENCODING(
            source.span(offset, offset + 1),
            f"invalid {encoding.upper()} byte sequence; replaced with U+FFFD",
            hint="save the Modelfile as UTF-8 (or UTF-16 with a byte order mark)",
            label="not valid " + encoding.upper(),
        )
        return text, (diag,)


def _parse(source: SourceFile, early: tuple[Diagnostic, ...]) -> ParseResult:
    text = source.text
    if text and not text.endswith(("\n", "\r")):
        text += "\n"  # the grammar is line-based; spans are clamped to the real text
    try:
        tree = _lark().parse(text)
    except (UnexpectedInput, LarkError) as exc:  # the grammar is total: this is a bug
        offset = getattr(exc, "pos_in_stream", None) or 0
        diag = codes.INTERNAL_SYNTAX(
            source.span(offset, offset + 1),
            f"the parser failed here ({type(exc).__name__})",
            hint="please report this Modelfile as an mfc bug",
        )
        return ParseResult(Modelfile((), source.name), (*early, diag), source)
    finally:
        _local.closes = None  # do not keep the text alive
    items, diags = _Lower(source).transform(tree)
    return ParseResult(Modelfile(items, source.name), (*early, *diags), source)


# What each keyword takes, for "needs a value" messages.
_NEEDS = {
    "FROM": ("a model name or a path", "FROM llama3.2"),
    "DRAFT": ("a model name or a path", "DRAFT ./draft.gguf"),
    "ADAPTER": ("a path to a LoRA adapter", "ADAPTER ./adapter.gguf"),
    "PARAMETER": ("a name and a value", "PARAMETER temperature 0.7"),
    "TEMPLATE": ("a template", 'TEMPLATE """{{ .Prompt }}"""'),
    "SYSTEM": ("a system message", "SYSTEM You are a helpful assistant."),
    "LICENSE": ("the license text", "LICENSE MIT"),
    "MESSAGE": ("a role and a text", "MESSAGE user Hello!"),
    "REQUIRES": ("a version", "REQUIRES 0.6.0"),
    "RENDERER": ("a renderer name", "RENDERER qwen3-coder"),
    "PARSER": ("a parser name", "PARSER qwen3-coder"),
    "ARG": ("a variable name", "ARG BASE=llama3.2"),
}


def _unknown_word_hint(word: str) -> str:
    """did-you-mean for an unknown first word; says why a look-alike keyword is not one."""
    hint = keyword_hint(word) if re.search(r"[^\W\d_]", word) else None
    if hint is None:
        return (
            "a line must start with an instruction (" + ", ".join(KEYWORDS) + "); "
            'if this line continues the value above, quote that value with `"""`'
        )
    odd = next((ch for ch in word if not ch.isascii()), None)
    if odd is not None:
        hint += f" (`{odd}` is {chars.describe(odd)}, not an ASCII letter)"
    return hint


def _invisible_in_word_hint(word: str) -> str | None:
    """`PARAMETER ␣temperature` with an NBSP: say which character to delete."""
    odd = next((ch for ch in word if not chars.is_printable(ch)), None)
    if odd is None:
        return None
    return f"delete the invisible {chars.describe(odd)} in `{chars.escape(word)}`"


def keyword_hint(word: str) -> str | None:
    """'did you mean' for a mistyped instruction keyword (shared with docs/tests)."""
    match = difflib.get_close_matches(word.upper(), KEYWORDS, n=1, cutoff=0.6)
    return f"did you mean `{match[0]}`?" if match else None


@dataclass(frozen=True, slots=True)
class _Lowered:
    item: Item | None
    diagnostics: tuple[Diagnostic, ...] = ()
    unterminated: bool = False
    bad_line: bool = False


class _Lower(Transformer):
    """Tree -> IR items and diagnostics (collected, never raised)."""

    def __init__(self, source: SourceFile):
        super().__init__(visit_tokens=False)
        self.source = source
        self._span = source.span  # hot: four spans per instruction

    def transform(self, tree: Tree) -> tuple[tuple[Item, ...], tuple[Diagnostic, ...]]:
        """The tree is two levels deep (start -> one subtree per line -> tokens), so a plain
        loop does what Transformer's recursive visit does, at a fraction of the cost."""
        return self.start([getattr(self, sub.data)(sub.children) for sub in tree.children])

    def _tok_span(self, tok: Token):
        return self._span(tok.start_pos, tok.end_pos)

    # -- assembly ------------------------------------------------------------------------------
    def start(self, children: list[_Lowered]) -> tuple[tuple[Item, ...], tuple[Diagnostic, ...]]:
        items: list[Item] = []
        diags: list[Diagnostic] = []
        in_unterminated = False
        for lowered in children:
            if in_unterminated:
                if lowered.bad_line or isinstance(lowered.item, Comment):
                    continue  # most likely the body of the unterminated value
                in_unterminated = False  # resume at the next line that starts an instruction
            in_unterminated = lowered.unterminated
            diags.extend(lowered.diagnostics)
            if lowered.item is not None:
                items.append(lowered.item)
        return tuple(items), tuple(diags)

    # -- comments and bad lines ----------------------------------------------------------------
    def comment(self, children: list[Token]) -> _Lowered:
        (tok,) = children
        text = str(tok).rstrip(" \t")
        return _Lowered(Comment(text, self._span(tok.start_pos, tok.start_pos + len(text))))

    def invisible(self, children: list[Token]) -> _Lowered:
        (tok,) = children
        diag = codes.INVISIBLE_CHARACTER(
            self._tok_span(tok),
            f"invisible {chars.describe(str(tok))} before the instruction is ignored",
            hint="delete it (Ollama drops it too)",
            label="invisible character",
        )
        return _Lowered(None, (diag,))

    def bad_line(self, children: list[Token]) -> _Lowered:
        (tok,) = children
        text, start = str(tok), tok.start_pos
        if not chars.is_printable(text[0]):
            return self._invisible_start(text, start)
        m = re.match(r"[A-Za-z]+", text)
        glued = (
            m is not None
            and m.end() < len(text)
            and (text[m.end()].isalnum() or text[m.end()] == "_")
        )
        if m and m.group().upper() in KEYWORDS and not glued:
            keyword = m.group().upper()
            after = text[m.end() :]
            if not after.strip(" \t"):
                what, example = _NEEDS[keyword]
                diag = codes.MISSING_VALUE(
                    self._span(start, start + m.end()),
                    f"`{keyword}` needs {what}",
                    hint=f"write it on the same line, e.g. `{example}`",
                )
            else:
                at = start + m.end()
                found = after[0]
                message = f"expected a space or tab after `{keyword}`"
                if not chars.is_printable(found):
                    message += f", found invisible {chars.describe(found)}"
                # `FROM:x`, `PARAMETER=x 1`: the glued `:`/`=` is a separator typo, not value
                rest = after[1:] if found in ":=" or not chars.is_printable(found) else after
                rest = chars.escape(rest.strip(" \t"))
                diag = codes.MISSING_SEPARATOR(
                    self._span(at, at + 1),
                    message,
                    hint=f"write `{keyword} {rest}`",
                    label="space needed here",
                )
            return _Lowered(None, (diag,), bad_line=True)
        word = re.match(r"[^ \t]+", text)
        assert word is not None
        from mfc.modelfile.params import PARAMETERS

        if word.group() in PARAMETERS:
            hint: str | None = f"to set a parameter write `PARAMETER {text.strip()}`"
        else:
            hint = _unknown_word_hint(word.group())
        diag = codes.UNKNOWN_INSTRUCTION(
            self._span(start, start + word.end()),
            f"unknown instruction `{chars.escape(word.group())}`",
            hint=hint,
            label="not an instruction",
        )
        return _Lowered(None, (diag,), bad_line=True)

    def _invisible_start(self, text: str, start: int) -> _Lowered:
        """A line that starts with a character nobody sees: name it (quoting it shows nothing)."""
        first = text[0]
        rest = text[1:].lstrip(" \t")
        hint = "delete it"
        if rest and not chars.is_printable(rest[0]):
            hint = "delete the invisible characters at the start of the line"
        elif text[1:2] in (" ", "\t") and re.match(r"[A-Za-z]+(?=[ \t])", rest):
            hint = "delete it; Ollama reads one invisible character only right before a keyword"
        else:
            word = re.match(r"[A-Za-z]+", text[1:])
            guess = keyword_hint(word.group()) if word else None
            if guess and word and word.group().upper() not in KEYWORDS:
                hint += f"; then {guess}"
        diag = codes.UNKNOWN_INSTRUCTION(
            self._span(start, start + 1),
            f"line starts with invisible {chars.describe(first)}",
            hint=hint,
            label="invisible character",
        )
        return _Lowered(None, (diag,), bad_line=True)

    # -- values --------------------------------------------------------------------------------
    def _value(self, tok: Token | None, keyword_tok: Token):
        """(value, quote, span, diagnostics, unterminated) for an optional value token."""
        if tok is None:
            return "", Quote.NONE, None, (), False
        text = str(tok)
        span = self._tok_span(tok)
        if tok.type == "TRIPLE_QUOTED":
            return text[3:-3], Quote.TRIPLE, span, (), False
        if tok.type == "QUOTED":
            return text[1:-1], Quote.DOUBLE, span, (), False
        if tok.type == "BARE":
            return text, Quote.NONE, span, (), False
        # UNTERMINATED
        delim = '"""' if text.startswith('"""') else '"'
        body = text[len(delim) :]
        closed_early = delim in body.rstrip(" \t") and not body.rstrip(" \t").endswith(delim)
        hint = (
            f"text after the closing `{delim}` keeps the value open; move it inside the quotes"
            if closed_early
            else f"end the value with `{delim}` as the last thing on a line"
        )
        diag = codes.UNTERMINATED_QUOTE(
            self._span(tok.start_pos, tok.start_pos + len(delim)),
            f"unterminated quoted value of `{keyword_tok.upper()}`: "
            f"no later line ends with `{delim}`",
            hint=hint,
            label="opened here",
        )
        return None, Quote(delim), span, (diag,), True

    def _instruction(self, keyword_tok: Token, rest: list[Token], **extra) -> _Lowered:
        keyword = keyword_tok.upper()
        value_tok = rest[-1] if rest and rest[-1].type in _VALUE_TYPES else None
        value, quote, value_span, diags, unterminated = self._value(value_tok, keyword_tok)
        if unterminated:
            return _Lowered(None, diags, unterminated=True)
        last = value_tok or (rest[-1] if rest else keyword_tok)
        inst = Instruction(
            keyword=keyword,
            value=value,
            quote=quote,
            span=self._span(keyword_tok.start_pos, last.end_pos),
            keyword_span=self._tok_span(keyword_tok),
            value_span=value_span,
            **extra,
        )
        return _Lowered(inst, diags)

    def _simple(self, children: list[Token]) -> _Lowered:
        return self._instruction(children[0], children[1:])

    from_ = draft = template = system = license = requires = renderer = parser = arg = _simple

    def adapter(self, children: list[Token]) -> _Lowered:
        flags = tuple(self._flag(t) for t in children[1:] if t.type == "FLAG")
        return self._instruction(children[0], children[1:], flags=flags)

    def _flag(self, tok: Token) -> Flag:
        name, eq, value = str(tok)[2:].partition("=")
        return Flag(name, value if eq else None, self._tok_span(tok))

    def _extra_blank(self, keyword_tok: Token, name_tok: Token, what: str) -> tuple:
        gap = name_tok.start_pos - keyword_tok.end_pos
        if gap <= 1:
            return ()
        diag = codes.EXTRA_BLANK(
            self._span(keyword_tok.end_pos + 1, name_tok.start_pos),
            f"more than one blank between `{keyword_tok.upper()}` and the {what}",
            hint=f"write `{keyword_tok.upper()} {name_tok} …` with a single space "
            "(Ollama reads the extra blank as an empty name)",
            label="extra blank",
        )
        return (diag,)

    def _needs_value(self, kw: Token, keyword: str) -> _Lowered:
        """``keyword`` with nothing after it: MISSING_VALUE with an example."""
        what, example = _NEEDS[keyword]
        diag = codes.MISSING_VALUE(
            self._tok_span(kw), f"`{keyword}` needs {what}", hint=f"e.g. `{example}`"
        )
        return _Lowered(None, (diag,))

    def parameter(self, children: list[Token]) -> _Lowered:
        kw = children[0]
        if len(children) == 1:
            return self._needs_value(kw, "PARAMETER")
        second = children[1]
        if second.type == "BAD_PARAM":
            return _Lowered(None, (self._bad_param(second),))
        lowered = self._instruction(
            kw, children[2:], name=str(second), name_span=self._tok_span(second)
        )
        extra = self._extra_blank(kw, second, "parameter name")
        return _Lowered(lowered.item, extra + lowered.diagnostics, lowered.unterminated)

    def _bad_param(self, tok: Token) -> Diagnostic:
        text = str(tok).rstrip(" \t")
        start = tok.start_pos
        if re.fullmatch(r"[A-Za-z0-9_]+", text):
            return codes.MISSING_VALUE(
                self._span(start, start + len(text)),
                f"parameter `{text}` has no value",
                hint=f"write `PARAMETER {text} <value>` on one line",
            )
        word = re.match(r"[^ \t]+", text)
        assert word is not None
        bad = word.group()
        sep = re.search(r"[=:]", bad)
        name = bad[: sep.start()] if sep else ""
        if sep and re.fullmatch(r"[A-Za-z0-9_]+", name):
            rest = text[sep.end() :].strip()
            hint = f"separate the name and the value with a space: `PARAMETER {name} {rest}`"
        else:
            fixed = re.sub(r"[^A-Za-z0-9_]", "_", bad)
            hint = "a parameter name is letters, digits and `_`"
            from mfc.modelfile.params import PARAMETERS

            if fixed in PARAMETERS:
                hint += f"; did you mean `{fixed}`?"
            hint = _invisible_in_word_hint(bad) or hint
        return codes.INVALID_PARAMETER_NAME(
            self._span(start, start + word.end()),
            f"invalid parameter name `{chars.escape(bad)}`",
            hint=hint,
            label="not a parameter name",
        )

    def message(self, children: list[Token]) -> _Lowered:
        kw = children[0]
        if len(children) == 1:
            return self._needs_value(kw, "MESSAGE")
        second = children[1]
        roles = _ROLES_TEXT
        if second.type == "BAD_ROLE":
            text = str(second).rstrip(" \t")
            start = second.start_pos
            if re.fullmatch(r"[A-Za-z]+", text):
                diag = codes.MISSING_VALUE(
                    self._span(start, start + len(text)),
                    "`MESSAGE` has a role but no text",
                    hint=f"write `MESSAGE {text} <text>` on one line",
                )
            else:
                bad = re.match(r"[^ \t]+", text).group()  # type: ignore[union-attr]
                hint = f"the role is one of {roles}"
                if bad.rstrip(":").lower() in ROLES:
                    hint = f"write `MESSAGE {bad.rstrip(':').lower()} …` (no `:` after the role)"
                hint = _invisible_in_word_hint(bad) or hint
                diag = codes.INVALID_ROLE(
                    self._span(start, start + len(bad)),
                    f"invalid message role `{chars.escape(bad)}`",
                    hint=hint,
                    label="not a role",
                )
            return _Lowered(None, (diag,))
        role = str(second)
        diags: tuple = self._extra_blank(kw, second, "role")
        if role not in ROLES:
            hint = f"the role is one of {roles}"
            if role.lower() in ROLES:
                hint = f"roles are lower case: did you mean `{role.lower()}`?"
            else:
                match = difflib.get_close_matches(role.lower(), ROLES, n=1, cutoff=0.6)
                if match:
                    hint = f"did you mean `{match[0]}`?"
            diags += (
                codes.INVALID_ROLE(
                    self._tok_span(second),
                    f"invalid message role `{role}`",
                    hint=hint,
                    label="not a role",
                ),
            )
        lowered = self._instruction(kw, children[2:], role=role, name_span=self._tok_span(second))
        return _Lowered(lowered.item, diags + lowered.diagnostics, lowered.unterminated)


_ROLES_TEXT = ", ".join(f"`{r}`" for r in ROLES)
_VALUE_TYPES = frozenset({"TRIPLE_QUOTED", "QUOTED", "BARE", "UNTERMINATED"})
