"""The one place templates execute: Jinja2's ``ImmutableSandboxedEnvironment``.

Templates come from GGUF files and Modelfiles, so they are untrusted. On top
of Jinja's sandbox (no underscore attributes, no mutation of lists/dicts, no
unsafe callables) this environment *raises* on unsafe access instead of
quietly rendering an empty string, and caps string/list repetition so a
template cannot allocate without bound.

Every render also runs on a budget (``budget``): a time limit, checked at each
loop iteration and each call (nested loops and recursive macros are the only
ways a template can run long), and an output limit, checked on every chunk the
template emits and on every string it builds with ``~`` or ``+``. Exceeding
either raises ``BudgetExceeded``, so a hostile template costs at most
``TIME_LIMIT`` seconds and ``OUTPUT_LIMIT`` characters, never a hang.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, NoReturn

from jinja2 import Template, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.ext import Extension
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mfc.template import go_values

MAX_SIZE = 1_000_000  # longest string/list a template may build with `*`
TIME_LIMIT = 2.0  # seconds one prompt may take to render
OUTPUT_LIMIT = 4 * 1024 * 1024  # characters one prompt may produce (plus 4 x its input)


class BudgetExceeded(SecurityError):
    """A render ran out of its time or output budget."""


@dataclass(slots=True)
class Budget:
    """What one render may still spend: a deadline and a number of characters."""

    seconds: float
    max_output: int
    deadline: float = 0.0
    output: int = 0

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise BudgetExceeded(
                f"rendering took longer than {self.seconds:g} s (the template time budget): "
                "a loop or a recursive macro runs too long"
            )

    def size(self, n: int) -> None:
        if n > self.max_output:
            raise BudgetExceeded(
                f"the template built a string of more than {_size(self.max_output)} "
                "(the template output budget)"
            )

    def emit(self, n: int) -> None:
        self.output += n
        if self.output > self.max_output:
            raise BudgetExceeded(
                f"rendering produced more than {_size(self.max_output)} of text "
                "(the template output budget)"
            )


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:g} MiB" if n >= 1024 * 1024 else f"{n} characters"


_BUDGET: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("mfc_budget", default=None)


@contextlib.contextmanager
def budget(
    seconds: float | None = None, max_output: int | None = None, *, input_size: int = 0
) -> Iterator[Budget]:
    """Run the renders inside on one budget; nested calls share the outer one.

    ``input_size`` (characters of messages and tools handed to the template)
    widens the output limit: a prompt legitimately repeats what it is given.
    """
    current = _BUDGET.get()
    if current is not None:
        yield current
        return
    b = Budget(
        TIME_LIMIT if seconds is None else seconds,
        (OUTPUT_LIMIT if max_output is None else max_output) + 4 * input_size,
    )
    b.deadline = time.monotonic() + b.seconds
    token = _BUDGET.set(b)
    try:
        yield b
    finally:
        _BUDGET.reset(token)


def _current() -> Budget:
    b = _BUDGET.get()
    # Outside `budget()` (``Template.generate``; ``render`` always opens one) sizes are
    # still checked, time is not.
    return _NO_DEADLINE if b is None else b


_NO_DEADLINE = Budget(TIME_LIMIT, OUTPUT_LIMIT, deadline=float("inf"))


class _BudgetCodeGenerator(CodeGenerator):
    """Jinja's code generator, with budget checks compiled into every template.

    Each ``for`` iterates through ``environment.budget_iter`` (a deadline check
    per item) and each ``~`` concatenation's result goes through
    ``environment.budget_str`` (a size check).
    """

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        if not getattr(node, "_mfc_budgeted", False):
            node.iter = nodes.Call(
                nodes.EnvironmentAttribute("budget_iter"), [node.iter], [], None, None
            )
            node._mfc_budgeted = True  # type: ignore[attr-defined]
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.budget_str(")
        super().visit_Concat(node, frame)
        self.write(")")


class BudgetedTemplate(Template):
    """``render`` consumes the template chunk by chunk, counting output against the budget."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        ctx = self.new_context(dict(*args, **kwargs))
        parts: list[str] = []
        with budget() as b:
            try:
                for chunk in self.root_render_func(ctx):
                    b.emit(len(chunk))
                    parts.append(chunk)
            except Exception:
                self.environment.handle_exception()
        return self.environment.concat(parts)


class Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(["*", "**", "+"])
    code_generator_class = _BudgetCodeGenerator
    template_class = BudgetedTemplate

    @staticmethod
    def budget_iter(iterable: Iterable[Any]) -> Iterator[Any]:
        b = _current()
        b.tick()
        for item in iterable:
            b.tick()
            yield item

    @staticmethod
    def budget_str(value: Any) -> Any:
        if isinstance(value, str):
            _current().size(len(value))
        return value

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _current().tick()  # recursion (macros, recursive loops) goes through here
        return super().call(__context, __obj, *args, **kwargs)

    def unsafe_undefined(self, obj: Any, attribute: str) -> NoReturn:
        raise SecurityError(
            f"access to attribute `{attribute}` of a `{type(obj).__name__}` object is not "
            "allowed in templates"
        )

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                _current().size(len(left) + len(right))
            return left + right
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

    tags = {"generation"}  # noqa: RUF012 - Jinja2's Extension declares a mutable set

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
