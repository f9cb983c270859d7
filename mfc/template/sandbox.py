"""The one place templates execute: Jinja2's ``ImmutableSandboxedEnvironment``.

Templates come from GGUF files and Modelfiles, so they are untrusted. On top
of Jinja's sandbox (no underscore attributes, no mutation of lists/dicts, no
unsafe callables) this environment *raises* on unsafe access instead of
quietly rendering an empty string, and caps string/list repetition so a
template cannot allocate without bound.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any, NoReturn

from jinja2 import Template, nodes
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.ext import Extension
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mfc.template import go_values

MAX_SIZE = 1_000_000  # longest string/list a template may build with `*`


class Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(["*", "**"])

    def unsafe_undefined(self, obj: Any, attribute: str) -> NoReturn:  # type: ignore[override]
        raise SecurityError(
            f"access to attribute `{attribute}` of a `{type(obj).__name__}` object is not "
            "allowed in templates"
        )

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, (int, float)) and abs(right) > 64:
                raise SecurityError("exponent too large in template")
            return left**right
        if isinstance(left, (str, list, tuple)) and isinstance(right, int):
            size = len(left) * right
        elif isinstance(right, (str, list, tuple)) and isinstance(left, int):
            size = len(right) * left
        else:
            size = 0
        if size > MAX_SIZE:
            raise SecurityError(f"template tried to build a value of {size} items")
        return left * right


class GenerationTag(Extension):
    """``{% generation %}…{% endgeneration %}``: transformers marks assistant text with it
    (for training masks); for rendering a prompt it is a plain block."""

    tags = frozenset({"generation"})

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def _raise_exception(message: str) -> NoReturn:
    raise TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(
    value: Any,
    indent: int | None = None,
    ensure_ascii: bool = False,
    sort_keys: bool = False,
    separators: Any = None,
) -> str:
    # transformers' override: no HTML escaping, unicode kept, key order kept
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


@lru_cache(maxsize=1)
def go_environment() -> Sandbox:
    """For translated Go templates: whitespace exactly as written."""
    env = Sandbox(keep_trailing_newline=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals.update(go_values.BUILTINS)
    return env


@lru_cache(maxsize=1)
def hf_environment() -> Sandbox:
    """For Jinja2 chat templates, configured as Hugging Face ``transformers`` does."""
    env = Sandbox(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.loopcontrols", GenerationTag],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


@lru_cache(maxsize=64)
def compile_go(source: str) -> Template:
    return go_environment().from_string(source)


@lru_cache(maxsize=64)
def compile_hf(source: str) -> Template:
    return hf_environment().from_string(source)
