"""Characters a reader cannot see: Go's printability rule, names, and escaping.

Ollama keeps a character only when Go's ``strconv.IsPrint`` says it is
printable (letters, marks, numbers, punctuation, symbols, ASCII space), so an
invisible character before a keyword is dropped there. Diagnostics name such
characters (``U+00A0 NO-BREAK SPACE``) and escape them in quoted text, since a
message that quotes an invisible culprit does not show it.
"""

from __future__ import annotations

import unicodedata

# Categories Go's strconv.IsPrint rejects (plus unassigned code points, Cn).
_UNPRINTABLE = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zs", "Zl", "Zp"})
# Control characters have no Unicode name; these are the ones seen in text files.
_CONTROL_NAMES = {
    "\x00": "NULL",
    "\x08": "BACKSPACE",
    "\t": "CHARACTER TABULATION",
    "\n": "LINE FEED",
    "\x0b": "LINE TABULATION",
    "\x0c": "FORM FEED",
    "\r": "CARRIAGE RETURN",
    "\x1b": "ESCAPE",
    "\x7f": "DELETE",
    "\x85": "NEXT LINE",
}


def is_printable(ch: str) -> bool:
    """Go's ``strconv.IsPrint``: what Ollama keeps (ASCII space yes, NBSP no)."""
    return ch == " " or unicodedata.category(ch) not in _UNPRINTABLE


def describe(ch: str) -> str:
    """``U+00A0 NO-BREAK SPACE`` — a name a user can search for."""
    name = unicodedata.name(ch, "") or _CONTROL_NAMES.get(ch, "")
    if not name:
        name = "a control character" if unicodedata.category(ch) == "Cc" else "unnamed"
    return f"U+{ord(ch):04X} {name}"


def escape(text: str) -> str:
    """``text`` with every non-printable character written as ``\\u00a0`` (for messages)."""
    if all(is_printable(ch) for ch in text):
        return text
    return "".join(ch if is_printable(ch) else _escape_one(ch) for ch in text)


def _escape_one(ch: str) -> str:
    code = ord(ch)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
