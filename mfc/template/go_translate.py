"""Translate parsed Go templates into Jinja2 source that keeps Go's meaning.

The output is ordinary Jinja2 that calls the ``go_*`` helpers from
``go_values`` for every lookup, test and builtin, so it renders in the same
sandbox as any other template. Two properties make errors point at the right
place: text is copied verbatim (``{`` and ``\\r`` are emitted as string
expressions, nothing else is special in Jinja text), and the output keeps the
source's line numbers — newlines dropped by trim markers or inside actions are
re-emitted inside ``{# #}`` comments — so a Jinja error line is a Go line.

Go variables declared with ``:=`` live in a ``namespace`` so ``$x = …`` inside
``range`` updates the outer variable, as in Go; range variables are the Jinja
loop variables.
"""

from __future__ import annotations

import json

from mfc.template import go_ast as ast
from mfc.template.go_parse import line_col

_FUNCS = {
    "eq": "go_eq",
    "ne": "go_ne",
    "lt": "go_lt",
    "le": "go_le",
    "gt": "go_gt",
    "ge": "go_ge",
    "len": "go_len",
    "index": "go_index",
    "slice": "go_slice",
    "json": "go_json",
    "print": "go_print",
    "printf": "go_printf",
    "println": "go_println",
    "html": "go_html",
    "js": "go_js",
    "urlquery": "go_urlquery",
}


def jinja_string(value: str) -> str:
    """A Jinja2 string literal for ``value`` (Jinja unescapes like Python)."""
    return json.dumps(value, ensure_ascii=False)


class _Translator:
    def __init__(self, text: str):
        self.text = text
        self.out: list[str] = []
        self.line = 1
        self.counter = 0
        self.scopes: list[dict[str, str]] = [{"$": "root"}]
        self.uses_ns = False

    # -- output with line alignment --------------------------------------------------------------
    def emit(self, chunk: str) -> None:
        self.out.append(chunk)
        self.line += chunk.count("\n")

    def at(self, pos: int) -> None:
        """Pad with a comment so the next output starts on ``pos``'s source line."""
        line, _ = line_col(self.text, pos)
        if line > self.line:
            self.emit("{#" + "\n" * (line - self.line) + "#}")

    def fresh(self, base: str) -> str:
        self.counter += 1
        return f"{base}{self.counter}"

    def slot(self, go_name: str) -> str:
        self.uses_ns = True
        ident = "".join(c if c.isalnum() else "_" for c in go_name[1:])
        return f"ns.v{self.fresh('')}_{ident}"

    def resolve(self, go_name: str) -> str:
        for scope in reversed(self.scopes):
            if go_name in scope:
                return scope[go_name]
        return f"go_fail({jinja_string(f'undefined variable {go_name}')})"

    # -- nodes -----------------------------------------------------------------------------------
    def nodes(self, nodes: tuple[ast.Node, ...], dot: str) -> None:
        for node in nodes:
            self.node(node, dot)

    def node(self, node: ast.Node, dot: str) -> None:
        if isinstance(node, ast.Text):
            self.at(node.pos)
            self.emit_text(node.text)
        elif isinstance(node, ast.Action):
            self.at(node.pos)
            self.action(node.pipe, dot)
        elif isinstance(node, ast.Branch):
            self.branch(node, dot)
        elif isinstance(node, ast.LoopControl):
            self.at(node.pos)
            self.emit(f"{{% {node.keyword} %}}")
        else:  # pragma: no cover - exhaustive
            raise TypeError(node)

    def emit_text(self, text: str) -> None:
        buf: list[str] = []
        for ch in text:
            if ch in "{\r":
                buf.append("{{ " + jinja_string(ch) + " }}")
            else:
                buf.append(ch)
        self.emit("".join(buf))

    def action(self, pipe: ast.Pipe, dot: str) -> None:
        value = self.pipe(pipe, dot)
        if pipe.decl:
            self.emit(f"{{% set {self.declare(pipe, 0)} = {value} %}}")
        else:
            self.emit(f"{{{{ go_output({value}) }}}}")

    def declare(self, pipe: ast.Pipe, index: int) -> str:
        name = pipe.decl[index]
        if pipe.assign:
            target = self.resolve(name)
            if not target.startswith("ns."):  # assigning a range variable or `$`
                target = self.slot(name)
                self.scopes[-1][name] = target
            return target
        target = self.slot(name)
        self.scopes[-1][name] = target
        return target

    def branch(self, node: ast.Branch, dot: str) -> None:
        self.at(node.pos)
        self.scopes.append({})
        if node.kind == "range":
            value = self.pipe(node.pipe, dot)
            key, val = self.fresh("k"), self.fresh("v")
            self.emit(f"{{% for {key}, {val} in go_range({value}) %}}")
            if len(node.pipe.decl) == 2:
                self.bind(node.pipe, 0, key)
                self.bind(node.pipe, 1, val)
            elif len(node.pipe.decl) == 1:
                self.bind(node.pipe, 0, val)
            self.nodes(node.body, val)
            self.scopes.pop()
            if node.orelse is not None:
                self.at(node.else_pos)
                self.emit("{% else %}")
                self.nodes(node.orelse, dot)
            self.at(node.end_pos)
            self.emit("{% endfor %}")
            return
        value = self.pipe(node.pipe, dot)
        inner_dot = dot
        if node.pipe.decl:
            target = self.declare(node.pipe, 0)
            self.emit(f"{{% set {target} = {value} %}}")
            value = target
        if node.kind == "with":
            if not node.pipe.decl:
                target = self.slot("$with")
                self.emit(f"{{% set {target} = {value} %}}")
                value = target
            inner_dot = value
        self.emit(f"{{% if go_truth({value}) %}}")
        self.nodes(node.body, inner_dot)
        if node.orelse is not None:  # a variable declared in the condition is visible here too
            self.orelse(node, dot)
        self.scopes.pop()
        self.at(node.end_pos)
        self.emit("{% endif %}")

    def elif_chain(self, node: ast.Branch, dot: str) -> None:
        """``{{ else if x }}`` as ``{% elif %}`` (its ``end`` is the outer one)."""
        self.scopes.append({})
        self.emit(f"{{% elif go_truth({self.pipe(node.pipe, dot)}) %}}")
        self.nodes(node.body, dot)
        self.scopes.pop()
        if node.orelse is not None:
            self.orelse(node, dot)

    def orelse(self, node: ast.Branch, dot: str) -> None:
        """The ``else`` part: ``{{ else if x }}`` (no declaration) continues as ``elif``."""
        assert node.orelse is not None
        self.at(node.else_pos)
        chained = node.orelse[0] if len(node.orelse) == 1 else None
        if (
            isinstance(chained, ast.Branch)
            and chained.chained
            and chained.kind == "if"
            and not chained.pipe.decl
        ):
            self.elif_chain(chained, dot)
        else:
            self.emit("{% else %}")
            self.nodes(node.orelse, dot)

    def bind(self, pipe: ast.Pipe, index: int, loop_var: str) -> None:
        name = pipe.decl[index]
        if pipe.assign:
            self.emit(f"{{% set {self.declare(pipe, index)} = {loop_var} %}}")
        else:
            self.scopes[-1][name] = loop_var

    # -- expressions -----------------------------------------------------------------------------
    def pipe(self, pipe: ast.Pipe, dot: str) -> str:
        value: str | None = None
        for cmd in pipe.cmds:
            value = self.command(cmd, dot, value)
        assert value is not None
        return value

    def command(self, cmd: ast.Command, dot: str, piped: str | None) -> str:
        first = cmd.args[0]
        if isinstance(first, ast.Identifier):
            args = [self.arg(a, dot) for a in cmd.args[1:]]
            if piped is not None:
                args.append(piped)
            return self.call(first.name, args)
        if len(cmd.args) > 1 or piped is not None:
            what = "can't give argument to non-function"
            if isinstance(first, (ast.Field, ast.Variable, ast.Chain)):
                what = f"{what} (mfc templates have no methods)"
            return f"go_fail({jinja_string(what)})"
        if isinstance(first, ast.Nil):
            return f"go_fail({jinja_string('nil is not a command')})"
        return self.arg(first, dot)

    def call(self, name: str, args: list[str]) -> str:
        if name in ("and", "or"):
            if not args:
                msg = f"wrong number of args for {name}: want at least 1 got 0"
                return f"go_fail({jinja_string(msg)})"
            expr = args[-1]
            for a in reversed(args[:-1]):
                test = f"not go_truth({a})" if name == "and" else f"go_truth({a})"
                expr = f"({a} if {test} else {expr})"
            return expr
        if name == "not":
            if len(args) != 1:
                msg = f"wrong number of args for not: want 1 got {len(args)}"
                return f"go_fail({jinja_string(msg)})"
            return f"(not go_truth({args[0]}))"
        if name == "call":
            return f"go_fail({jinja_string('call is not supported: templates have no functions')})"
        return f"{_FUNCS[name]}({', '.join(args)})"

    def arg(self, node: ast.Arg, dot: str) -> str:
        if isinstance(node, ast.Field):
            return self.fields(dot, node.idents)
        if isinstance(node, ast.Variable):
            return self.fields(self.resolve(node.name), node.idents)
        if isinstance(node, ast.Dot):
            return dot
        if isinstance(node, ast.Nil):
            return "none"
        if isinstance(node, ast.Bool):
            return "true" if node.value else "false"
        if isinstance(node, ast.Number):
            return f"({node.value!r})"
        if isinstance(node, ast.String):
            return jinja_string(node.value)
        if isinstance(node, ast.Identifier):
            return self.call(node.name, [])
        if isinstance(node, ast.Chain):
            return self.fields(self.arg(node.node, dot), node.idents)
        if isinstance(node, ast.Pipe):
            return self.pipe(node, dot)
        raise TypeError(node)  # pragma: no cover

    @staticmethod
    def fields(base: str, idents: tuple[str, ...]) -> str:
        if not idents:
            return base
        return f"go_field({base}, {', '.join(jinja_string(i) for i in idents)})"


def translate(nodes: tuple[ast.Node, ...], text: str) -> str:
    """Jinja2 source for parsed ``nodes`` of template ``text``."""
    t = _Translator(text)
    t.nodes(nodes, "root")
    t.at(len(text))  # same number of lines as the source
    body = "".join(t.out)
    if t.uses_ns:
        body = "{% set ns = namespace() %}" + body
    return body
