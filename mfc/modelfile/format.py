"""IR -> canonical Modelfile text (``mfc fmt``, ``mfc show --modelfile``).

Canonical: upper-case keywords, one space between parts, one instruction per
line, comments kept, runs of blank lines collapsed to one. Values are quoted
only when needed (a line end, blanks at an edge, a leading `"`, empty), with
`\"\"\"` when the value contains `"`. ``parse(format(ir)) == ir`` holds for
every value ``quote_value`` accepts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mfc.modelfile.ir import Comment, Flag, Instruction, Modelfile

_LINE_END = re.compile(r"\r\n|\r|\n")


class UnrepresentableValue(ValueError):
    """A value no Modelfile quoting can hold (Modelfiles have no escapes)."""


def _closes_early(value: str, delim: str) -> bool:
    """Would ``delim + value + delim`` close before its end?

    A quoted value ends at the first line end where the text so far, without
    trailing blanks, ends with the delimiter — so a line inside the value must
    not end that way.
    """
    text = delim + value
    for m in _LINE_END.finditer(text):
        head = text[: m.start()].rstrip(" \t")
        if len(head) >= 2 * len(delim) and head.endswith(delim):
            return True
    return False


def needs_quotes(value: str) -> bool:
    return (
        value == ""
        or _LINE_END.search(value) is not None
        or value[0] in " \t"
        or value[-1] in " \t"
        or value.startswith('"')
    )


def quote_value(value: str, force: bool = False) -> str:
    """The value as Modelfile text: bare when possible, else `"…"` or `\"\"\"…\"\"\"`."""
    if not force and not needs_quotes(value):
        return value
    order = ('"""', '"') if '"' in value else ('"', '"""')
    for delim in order:
        if delim == '"' and value.startswith('""'):
            continue  # `"""…` would read as a triple-quoted value
        if not _closes_early(value, delim):
            return delim + value + delim
    raise UnrepresentableValue(
        'this value has a line ending in `"` and `"""` and cannot be quoted in a Modelfile'
    )


def render_instruction(
    keyword: str,
    value: str,
    *,
    name: str | None = None,
    role: str | None = None,
    flags: Iterable[Flag | str] = (),
) -> str:
    """One instruction in canonical form, e.g. ``PARAMETER stop "<|im_end|> "``."""
    keyword = keyword.upper()
    parts = [keyword]
    if keyword == "PARAMETER":
        if not name or not re.fullmatch(r"[A-Za-z0-9_]+", name):
            raise ValueError(f"invalid parameter name {name!r}")
        parts.append(name)
    elif keyword == "MESSAGE":
        if not role or not re.fullmatch(r"[A-Za-z]+", role):
            raise ValueError(f"invalid message role {role!r}")
        parts.append(role)
    flag_texts = [str(f) for f in flags]
    parts.extend(flag_texts)
    force = keyword == "ADAPTER" and value.startswith("--")  # would read as a flag
    parts.append(quote_value(value, force=force))
    return " ".join(parts)


def format_instruction(inst: Instruction) -> str:
    return render_instruction(
        inst.keyword, inst.value, name=inst.name, role=inst.role, flags=inst.flags
    )


def dominant_newline(text: str) -> str:
    """The file's line end: the most frequent of LF, CRLF and CR (LF when none, or a tie with it).

    `mfc fmt` keeps it, so formatting a CR-only or CRLF file does not convert it; deciding
    from the first line alone got CR-only files (no LF at all) wrong.
    """
    counts = {"\n": 0, "\r\n": 0, "\r": 0}
    for m in _LINE_END.finditer(text):
        counts[m.group()] += 1
    return max(counts, key=lambda nl: counts[nl])  # dict order breaks ties: LF, then CRLF


def format_modelfile(ir: Modelfile, newline: str = "\n") -> str:
    out: list[str] = []
    prev_end: int | None = None
    for item in ir.items:
        span = item.span
        if prev_end is not None and span is not None and span.line > prev_end + 1:
            out.append("")  # keep one blank line where the source had some
        if isinstance(item, Comment):
            out.append(item.text.rstrip(" \t"))
        else:
            out.append(format_instruction(item))
        prev_end = span.end_line if span is not None else None
    return "".join(line + newline for line in out)
