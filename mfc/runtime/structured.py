"""Structured outputs: a request's ``format`` (``"json"`` or a JSON schema) as a llama.cpp grammar.

Converted in the server process, before a request is queued, so a schema the converter
cannot express is refused (400) instead of reaching a runner; the runner only compiles GBNF.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class SchemaError(ValueError):
    """A JSON schema mfc cannot turn into a grammar; names the keyword and where it is."""

    def __init__(self, message: str, *, keyword: str = "", pointer: str = ""):
        super().__init__(message)
        self.keyword = keyword
        self.pointer = pointer


def grammar_for(fmt: str | Mapping[str, Any] | None) -> str | None:
    """GBNF for a request's ``format``: ``"json"`` (any JSON value), a JSON schema, or None."""
    if fmt is None:
        return None
    if fmt == "json":
        from llama_cpp.llama_grammar import JSON_GBNF

        return str(JSON_GBNF)
    if not isinstance(fmt, Mapping):
        raise SchemaError(f'format must be "json" or a JSON schema object, not {fmt!r}')
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        return str(json_schema_to_gbnf(json.dumps(fmt)))
    except Exception as exc:  # the converter raises bare exceptions on what it cannot express
        raise SchemaError(f"the JSON schema cannot be turned into a grammar: {exc}") from None
