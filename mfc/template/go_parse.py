"""Parse Go ``text/template`` source into ``go_ast`` nodes.

Follows Go's lexer and parser closely (trim markers, comments, declarations,
``else if``/``else with`` chains, parse-time checks for unknown functions and
undeclared variables) so that a template Ollama rejects is rejected here too,
but with a line and column. ``define``/``template``/``block`` are not
supported: no published Ollama template uses them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mfc.template import go_ast as ast
from mfc.template.errors import TemplateSyntaxError

# Go's builtins plus Ollama's `json`; `call` parses but fails when executed.
FUNCTIONS = frozenset(
    [
        "and",
        "call",
        "html",
        "index",
        "slice",
        "js",
        "len",
        "not",
        "or",
        "print",
        "printf",
        "println",
        "urlquery",
        "eq",
        "ge",
        "gt",
        "le",
        "lt",
        "ne",
        "json",
    ]
)
KEYWORDS = frozenset(
    [
        "if",
        "else",
        "end",
        "range",
        "with",
        "define",
        "template",
        "block",
        "break",
        "continue",
        "nil",
        "true",
        "false",
    ]
)
_SPACE = " \t\r\n"
_NUMBER = re.compile(
    r"[+-]?(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+"
    r"|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?)"
)
_IDENT = re.compile(r"[^\W]+", re.UNICODE)
# Nesting limits (Python, which runs the translation, allows ~20 nested loops); no chat
# template comes close to them.
MAX_DEPTH = 40  # nested if/with/range and parentheses
MAX_RANGE_DEPTH = 12  # nested range
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # text ldelim rdelim space ident keyword field variable dot string char number
    #           lparen rparen pipe declare assign comma eof
    value: str
    pos: int


def line_col(text: str, pos: int) -> tuple[int, int]:
    """1-based line and column of character offset ``pos``."""
    pos = max(0, min(pos, len(text)))
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, column


class _Lexer:
    def __init__(self, text: str):
        self.text = text
        self.tokens: list[Token] = []

    def error(self, message: str, pos: int) -> TemplateSyntaxError:
        return TemplateSyntaxError(message, *line_col(self.text, pos))

    def run(self) -> list[Token]:
        text, i, n = self.text, 0, len(self.text)
        while i < n:
            start = text.find("{{", i)
            if start < 0:
                self._text(text[i:], i)
                break
            trim_left = (
                text.startswith("{{-", start) and start + 3 < n and text[start + 3] in _SPACE
            )
            chunk = text[i:start]
            if trim_left:
                chunk = chunk.rstrip(_SPACE)
            self._text(chunk, i)
            i = self._action(start, trim_left)
        self.tokens.append(Token("eof", "", n))
        return self.tokens

    def _text(self, chunk: str, pos: int) -> None:
        if chunk:
            self.tokens.append(Token("text", chunk, pos))

    def _right_delim(self, i: int) -> tuple[int, bool] | None:
        """Length and trim flag of a right delimiter (with optional trim marker) at ``i``."""
        t = self.text
        if i < len(t) and t[i] in _SPACE and t.startswith("-}}", i + 1):
            return 4, True
        if t.startswith("}}", i):
            return 2, False
        return None

    def _after_action(self, i: int, trim: bool) -> int:
        if trim:
            j = i
            while j < len(self.text) and self.text[j] in _SPACE:
                j += 1
            return j
        return i

    def _action(self, start: int, trim_left: bool) -> int:
        text, n = self.text, len(self.text)
        i = start + (4 if trim_left else 2)
        if text.startswith("/*", i):  # comment: must end with */ right before the delimiter
            end = text.find("*/", i + 2)
            if end < 0:
                raise self.error("unclosed comment", start)
            rd = self._right_delim(end + 2)
            if rd is None:
                raise self.error("comment ends before closing delimiter", end)
            return self._after_action(end + 2 + rd[0], rd[1])
        self.tokens.append(Token("ldelim", "{{", start))
        depth = 0
        while True:
            if i >= n:
                raise self.error("unclosed action", start)
            rd = self._right_delim(i)
            if rd is not None:
                if depth > 0:
                    raise self.error("unclosed left paren", i)
                self.tokens.append(Token("rdelim", "}}", i))
                return self._after_action(i + rd[0], rd[1])
            c = text[i]
            if c in _SPACE:
                j = i
                while j < n and text[j] in _SPACE and self._right_delim(j) is None:
                    j += 1
                self.tokens.append(Token("space", text[i:j], i))
                i = j
            elif c == "}":
                raise self.error('unexpected "}" in operand', i)
            elif text.startswith(":=", i):
                self.tokens.append(Token("declare", ":=", i))
                i += 2
            elif c == "=":
                self.tokens.append(Token("assign", "=", i))
                i += 1
            elif c == "|":
                self.tokens.append(Token("pipe", "|", i))
                i += 1
            elif c == ",":
                self.tokens.append(Token("comma", ",", i))
                i += 1
            elif c == "(":
                depth += 1
                self.tokens.append(Token("lparen", "(", i))
                i += 1
            elif c == ")":
                depth -= 1
                if depth < 0:
                    raise self.error("unexpected right paren", i)
                self.tokens.append(Token("rparen", ")", i))
                i += 1
            elif c == '"':
                i = self._quoted(i)
            elif c == "`":
                end = text.find("`", i + 1)
                if end < 0:
                    raise self.error("unterminated raw quoted string", i)
                self.tokens.append(Token("string", text[i + 1 : end], i))
                i = end + 1
            elif c == "'":
                i = self._char(i)
            elif c == "$":
                m = _IDENT.match(text, i + 1)
                j = m.end() if m else i + 1
                self.tokens.append(Token("variable", text[i:j], i))
                i = j
            elif c == "." and i + 1 < n and _IDENT.match(text[i + 1]) and not text[i + 1].isdigit():
                m = _IDENT.match(text, i + 1)
                assert m is not None
                self.tokens.append(Token("field", m.group(), i))
                i = m.end()
            elif c.isdigit() or (c in "+-." and i + 1 < n and text[i + 1].isdigit()):
                m = _NUMBER.match(text, i)
                if m is None or (m.end() < n and _IDENT.match(text[m.end()])):
                    end = m.end() if m else i + 1
                    raise self.error(f"bad number syntax: {text[i : end + 1]!r}", i)
                self.tokens.append(Token("number", m.group(), i))
                i = m.end()
            elif c == ".":
                self.tokens.append(Token("dot", ".", i))
                i += 1
            elif _IDENT.match(c):
                m = _IDENT.match(text, i)
                assert m is not None
                word = m.group()
                kind = "keyword" if word in KEYWORDS else "ident"
                self.tokens.append(Token(kind, word, i))
                i = m.end()
            else:
                raise self.error(f"unrecognized character in action: {c!r}", i)

    def _quoted(self, i: int) -> int:
        text, n = self.text, len(self.text)
        j, out = i + 1, []
        while True:
            if j >= n or text[j] == "\n":
                raise self.error("unterminated quoted string", i)
            c = text[j]
            if c == '"':
                break
            if c == "\\":
                value, j = self._escape(j, '"')
                out.append(value)
                continue
            out.append(c)
            j += 1
        self.tokens.append(Token("string", "".join(out), i))
        return j + 1

    def _char(self, i: int) -> int:
        text = self.text
        j = i + 1
        if j < len(text) and text[j] == "\\":
            value, j = self._escape(j, "'")
        elif j < len(text) and text[j] not in "'\n":
            value, j = text[j], j + 1
        else:
            raise self.error("unterminated character constant", i)
        if j >= len(text) or text[j] != "'":
            raise self.error("unterminated character constant", i)
        self.tokens.append(Token("char", value, i))
        return j + 1

    def _escape(self, j: int, quote: str) -> tuple[str, int]:
        text = self.text
        c = text[j + 1] if j + 1 < len(text) else ""
        if c in _ESCAPES:
            return _ESCAPES[c], j + 2
        if c in ("\\", quote):
            return c, j + 2
        digits = {"x": 2, "u": 4, "U": 8}.get(c)
        if digits:
            hexs = text[j + 2 : j + 2 + digits]
            if len(hexs) == digits and all(h in "0123456789abcdefABCDEF" for h in hexs):
                return chr(int(hexs, 16)), j + 2 + digits
        if c in "01234567":
            octs = text[j + 1 : j + 4]
            if len(octs) == 3 and all(o in "01234567" for o in octs):
                return chr(int(octs, 8)), j + 4
        raise self.error("invalid escape sequence in string", j)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _Lexer(text).run()
        self.i = 0
        self.vars: list[str] = ["$"]
        self.range_depth = 0
        self.depth = 0

    def nest(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"template nests more than {MAX_DEPTH} levels deep", pos)

    # -- token helpers -------------------------------------------------------------------------
    def error(self, message: str, pos: int) -> TemplateSyntaxError:
        return TemplateSyntaxError(message, *line_col(self.text, pos))

    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def peek_non_space(self) -> Token:
        j = self.i
        while self.tokens[j].kind == "space":
            j += 1
        return self.tokens[j]

    def next_non_space(self) -> Token:
        tok = self.next()
        while tok.kind == "space":
            tok = self.next()
        return tok

    def expect_rdelim(self, context: str) -> Token:
        tok = self.next_non_space()
        if tok.kind != "rdelim":
            raise self.unexpected(tok, context)
        return tok

    def unexpected(self, tok: Token, context: str) -> TemplateSyntaxError:
        if tok.kind == "eof":
            return self.error("unexpected EOF", tok.pos)
        shown = tok.value if tok.kind != "string" else f'"{tok.value}"'
        return self.error(f"unexpected `{shown}` in {context}", tok.pos)

    # -- structure -------------------------------------------------------------------------------
    def parse(self) -> tuple[ast.Node, ...]:
        nodes: list[ast.Node] = []
        while self.peek().kind != "eof":
            node, stop = self.text_or_action()
            if stop is not None:
                raise self.error(f"unexpected `{{{{{stop.value}}}}}`", stop.pos)
            if node is not None:
                nodes.append(node)
        return tuple(nodes)

    def item_list(self, context: str, start: int) -> tuple[tuple[ast.Node, ...], Token]:
        """Nodes up to ``{{end}}`` or ``{{else}}``; returns them and the stopping keyword.

        A missing ``{{end}}`` is reported at ``start``, the action that opened the
        block (the end of the text would not say which block is open).
        """
        nodes: list[ast.Node] = []
        while True:
            if self.peek().kind == "eof":
                raise self.error(f"missing {{{{end}}}} for this {{{{{context}}}}}", start)
            node, stop = self.text_or_action()
            if stop is not None:
                return tuple(nodes), stop
            if node is not None:
                nodes.append(node)

    def text_or_action(self) -> tuple[ast.Node | None, Token | None]:
        tok = self.next()
        if tok.kind == "text":
            return ast.Text(tok.value, tok.pos), None
        assert tok.kind == "ldelim", tok
        start = tok.pos
        key = self.peek_non_space()
        if key.kind == "keyword":
            word = key.value
            if word in ("end", "else"):
                self.next_non_space()
                return None, key
            if word in ("if", "range", "with"):
                self.next_non_space()
                return self.control(word, start), None
            if word in ("break", "continue"):
                self.next_non_space()
                if self.range_depth == 0:
                    raise self.error(f"{{{{{word}}}}} outside {{{{range}}}}", key.pos)
                self.expect_rdelim(word)
                return ast.LoopControl(word, start), None
            if word in ("define", "template", "block"):
                raise self.error(
                    f"`{word}` is not supported by mfc (no Ollama template needs it); "
                    "inline the text instead",
                    key.pos,
                )
        pipe = self.pipeline("command", allow_decl=True)
        return ast.Action(pipe, start), None

    def control(self, kind: str, start: int, opened: int | None = None) -> ast.Branch:
        """``{{if}}``/``{{range}}``/``{{with}}`` at ``start``; ``opened`` is where the chain
        began for an ``{{else if}}`` (a missing shared ``{{end}}`` is reported there)."""
        opened = start if opened is None else opened
        saved = len(self.vars)
        self.nest(start)
        try:
            pipe = self.pipeline(kind, allow_decl=True, multi=kind == "range")
            if kind == "range":
                self.range_depth += 1
                if self.range_depth > MAX_RANGE_DEPTH:
                    self.range_depth -= 1
                    raise self.error(
                        f"`range` nests more than {MAX_RANGE_DEPTH} levels deep", start
                    )
            try:
                body, stop = self.item_list(kind, opened)
            finally:
                if kind == "range":
                    self.range_depth -= 1
            orelse: tuple[ast.Node, ...] | None = None
            else_pos = -1
            if stop.value == "else":
                else_pos = stop.pos
                nxt = self.peek_non_space()
                if kind in ("if", "with") and nxt.kind == "keyword" and nxt.value == kind:
                    # `{{else if x}}` is `{{else}}{{if x}}…{{end}}{{end}}` with one shared end.
                    self.next_non_space()
                    chained = self.control(kind, stop.pos, opened)
                    chained = ast.Branch(
                        chained.kind,
                        chained.pipe,
                        chained.body,
                        chained.orelse,
                        chained.pos,
                        True,
                        chained.else_pos,
                        chained.end_pos,
                    )
                    return ast.Branch(
                        kind, pipe, body, (chained,), start, False, else_pos, chained.end_pos
                    )
                self.expect_rdelim("else")
                orelse, stop = self.item_list(kind, opened)
                if stop.value != "end":
                    raise self.error("expected end; found {{else}}", stop.pos)
            self.expect_rdelim("end")
            return ast.Branch(kind, pipe, body, orelse, start, False, else_pos, stop.pos)
        finally:
            del self.vars[saved:]
            self.depth -= 1

    # -- pipelines -------------------------------------------------------------------------------
    def pipeline(
        self, context: str, *, allow_decl: bool, multi: bool = False, end: str = "rdelim"
    ) -> ast.Pipe:
        start = self.peek_non_space().pos
        decl: list[str] = []
        assign = False
        if allow_decl and self.peek_non_space().kind == "variable":
            save = self.i
            var = self.next_non_space()
            after = self.peek_non_space()
            if after.kind in ("declare", "assign"):
                self.next_non_space()
                assign = after.kind == "assign"
                decl.append(var.value)
                if assign:
                    self.use_var(var.value, var.pos)
            elif after.kind == "comma" and multi:
                self.next_non_space()
                var2 = self.next_non_space()
                if var2.kind != "variable":
                    raise self.error(f"missing variable in {context}", var2.pos)
                op = self.next_non_space()
                if op.kind not in ("declare", "assign"):
                    raise self.error(f"expected := after {context} variables", op.pos)
                assign = op.kind == "assign"
                decl.extend([var.value, var2.value])
            elif after.kind == "comma":
                raise self.error(f"too many declarations in {context}", after.pos)
            else:
                self.i = save
            if not assign:
                self.vars.extend(decl)
        cmds: list[ast.Command] = []
        while True:
            tok = self.peek_non_space()
            if tok.kind == end:
                self.next_non_space()
                break
            if tok.kind in ("rdelim", "rparen", "eof"):
                raise self.unexpected(tok, context)
            cmds.append(self.command(context))
            tok = self.peek_non_space()
            if tok.kind == "pipe":
                self.next_non_space()
        if not cmds:
            raise self.error(f"missing value for {context}", start)
        for n, cmd in enumerate(cmds[1:], start=2):
            if isinstance(cmd.args[0], (ast.Bool, ast.Dot, ast.Nil, ast.Number, ast.String)):
                raise self.error(f"non executable command in pipeline stage {n}", cmd.pos)
        return ast.Pipe(tuple(decl), assign, tuple(cmds), start)

    def command(self, context: str) -> ast.Command:
        args: list[ast.Arg] = []
        start = self.peek_non_space().pos
        while True:
            while self.peek().kind == "space":
                self.next()
            tok = self.peek()
            if tok.kind in ("rdelim", "rparen", "pipe", "eof"):
                break
            args.append(self.operand(context))
            nxt = self.peek()
            if nxt.kind not in ("space", "rdelim", "rparen", "pipe"):
                raise self.unexpected(nxt, "operand")
        if not args:
            raise self.error("empty command", start)
        return ast.Command(tuple(args), start)

    def operand(self, context: str) -> ast.Arg:
        node = self.term(context)
        if self.peek().kind != "field":
            return node
        idents: list[str] = []
        while self.peek().kind == "field":
            idents.append(self.next().value)
        if isinstance(node, ast.Field):
            return ast.Field(node.idents + tuple(idents), node.pos)
        if isinstance(node, ast.Variable):
            return ast.Variable(node.name, node.idents + tuple(idents), node.pos)
        if isinstance(node, (ast.Bool, ast.String, ast.Number, ast.Nil, ast.Dot)):
            raise self.error("unexpected . after term", node.pos)
        return ast.Chain(node, tuple(idents), node.pos)

    def term(self, context: str) -> ast.Arg:
        tok = self.next_non_space()
        kind, value, pos = tok.kind, tok.value, tok.pos
        if kind == "ident":
            if value not in FUNCTIONS:
                raise self.error(f"function `{value}` is not defined", pos)
            return ast.Identifier(value, pos)
        if kind == "dot":
            return ast.Dot(pos)
        if kind == "keyword" and value == "nil":
            return ast.Nil(pos)
        if kind == "keyword" and value in ("true", "false"):
            return ast.Bool(value == "true", pos)
        if kind == "variable":
            self.use_var(value, pos)
            return ast.Variable(value, (), pos)
        if kind == "field":
            return ast.Field((value,), pos)
        if kind == "string":
            return ast.String(value, pos)
        if kind == "char":
            return ast.Number(ord(value), pos)
        if kind == "number":
            return ast.Number(_number(value, self, pos), pos)
        if kind == "lparen":
            self.nest(pos)
            pipe = self.pipeline("parenthesized pipeline", allow_decl=False, end="rparen")
            self.depth -= 1
            return pipe
        raise self.unexpected(tok, "operand" if kind != "keyword" else context)

    def use_var(self, name: str, pos: int) -> None:
        if name not in self.vars:
            raise self.error(f"undefined variable `{name}`", pos)


def _number(text: str, parser: _Parser, pos: int) -> int | float:
    clean = text.replace("_", "")
    try:
        lower = clean.lower().lstrip("+-")
        if lower.startswith(("0x", "0b", "0o")):
            return int(clean, 0)
        if any(ch in lower for ch in ".e"):
            return float(clean)
        if len(lower) > 1 and lower.startswith("0"):
            return int(clean.replace("0", "0o", 1) if clean[0] == "0" else clean, 8)
        return int(clean)
    except ValueError:
        raise parser.error(f"bad number syntax: {text!r}", pos) from None


def parse(text: str) -> tuple[ast.Node, ...]:
    """Parse Go template ``text``; raises ``TemplateSyntaxError`` with a 1-based line/column."""
    return _Parser(text).parse()
