"""How Ollama executes a Go template (its ``template/template.go``), restated for mfc.

- After parsing, a template that mentions neither ``Messages`` nor ``Response``
  gets ``{{ .Response }}`` appended.
- Consecutive messages of one role are merged with a blank line (tool results
  are not); every system message also goes into ``.System``, joined the same way.
- A template that mentions ``.Messages`` runs once over the whole conversation.
- Otherwise ("legacy" templates) the conversation is cut into rounds of
  system/prompt/response. Each complete round renders the whole template; the
  last round renders the template only up to its first ``.Response`` field, so
  the prompt ends where the model's answer begins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from mfc.template import go_ast as ast
from mfc.template import go_values as gv


def identifiers(nodes: Iterable[ast.Node | ast.Arg | ast.Command]) -> set[str]:
    """Lower-cased field and variable names, found where Ollama's ``Identifiers`` looks."""
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Action):
            names |= identifiers([node.pipe])
        elif isinstance(node, ast.Branch):
            names |= identifiers([node.pipe, *node.body, *(node.orelse or ())])
        elif isinstance(node, ast.Pipe):
            names |= identifiers(node.cmds)
        elif isinstance(node, ast.Command):
            names |= identifiers(node.args)
        elif isinstance(node, ast.Field):
            names |= {i.lower() for i in node.idents}
        elif isinstance(node, ast.Variable):
            names |= {node.name.lower(), *(i.lower() for i in node.idents)}
    return names


def with_response(nodes: tuple[ast.Node, ...], end: int) -> tuple[ast.Node, ...]:
    """Ollama's parse-time touch-up: append ``{{ .Response }}`` when nothing uses it."""
    names = identifiers(nodes)
    if "messages" in names or "response" in names:
        return nodes
    field = ast.Field(("Response",), end)
    return (*nodes, ast.Action(ast.Pipe((), False, (ast.Command((field,), end),), end), end))


class _Cutter:
    """Drops everything after the first ``.Response`` field (Ollama's ``deleteNode``).

    Like Ollama, conditions of ``if``/``range``/``with`` are not searched, and the
    ``.Response`` action itself stays.
    """

    def __init__(self) -> None:
        self.cut = False

    def nodes(self, nodes: tuple[ast.Node, ...]) -> tuple[ast.Node, ...]:
        out: list[ast.Node] = []
        for node in nodes:
            kept = self.node(node)
            if kept is not None:
                out.append(kept)
        return tuple(out)

    def node(self, node: ast.Node) -> ast.Node | None:
        if self.cut:
            return None
        if isinstance(node, ast.Branch):
            body = self.nodes(node.body)
            orelse = None if node.orelse is None or self.cut else self.nodes(node.orelse)
            return replace(node, body=body, orelse=orelse)
        if isinstance(node, ast.Action):
            pipe = self.pipe(node.pipe)
            return None if pipe is None else replace(node, pipe=pipe)
        return node

    def pipe(self, pipe: ast.Pipe) -> ast.Pipe | None:
        cmds: list[ast.Command] = []
        for cmd in pipe.cmds:
            if self.cut:
                return None  # a command with every argument deleted empties the pipe
            args: list[ast.Arg] = []
            for arg in cmd.args:
                if self.cut:
                    continue
                if isinstance(arg, ast.Field) and "Response" in arg.idents:
                    self.cut = True
                    args.append(arg)
                elif isinstance(arg, ast.Pipe):
                    inner = self.pipe(arg)
                    if inner is not None:
                        args.append(inner)
                else:
                    args.append(arg)
            if not args:
                return None
            cmds.append(replace(cmd, args=tuple(args)))
        return replace(pipe, cmds=tuple(cmds)) if cmds else None


def cut_at_response(nodes: tuple[ast.Node, ...]) -> tuple[ast.Node, ...]:
    return _Cutter().nodes(nodes)


@dataclass(frozen=True, slots=True)
class Conversation:
    """The values Ollama's ``Execute`` starts from."""

    messages: tuple[Mapping[str, Any], ...]
    tools: tuple[Mapping[str, Any], ...] | None = None
    think: bool | str | None = None


def collate(messages: Sequence[Mapping[str, Any]]) -> tuple[str, list[gv.GoStruct]]:
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for m in messages:
        role = str(m.get("role", ""))
        content = str(m.get("content", "") or "")
        if role == "system":
            system.append(content)
        if out and out[-1].get("role") == role and role != "tool":
            out[-1]["content"] = str(out[-1].get("content", "") or "") + "\n\n" + content
        else:
            out.append(dict(m))
    return "\n\n".join(system), [gv.message(m) for m in out]


def _think_values(think: bool | str | None) -> dict[str, Any]:
    return {
        "Think": bool(think) if not isinstance(think, str) else think not in ("", "false"),
        "ThinkLevel": think if isinstance(think, str) else "",
        "IsThinkSet": think is not None,
    }


def messages_root(conv: Conversation) -> dict[str, Any]:
    """The root map for a template that ranges over ``.Messages``."""
    system, messages = collate(conv.messages)
    tools = gv.JSONList(gv.tool(t) for t in conv.tools) if conv.tools else gv.NilJSONList()
    return {
        "System": system,
        "Messages": messages,
        "Tools": tools,
        "Response": "",
        **_think_values(conv.think),
        "Query": "",
        "Document": "",
        "Instruction": "",
    }


def legacy_rounds(conv: Conversation) -> list[dict[str, Any]]:
    """Root maps for each render of a legacy template; the last one is the open round."""
    _, messages = collate(conv.messages)
    rounds: list[dict[str, Any]] = []
    state: dict[str, Any] = {"System": "", "Prompt": "", "Response": ""}

    def flush() -> None:
        rounds.append({**state, **_think_values(conv.think)})
        state.update(System="", Prompt="", Response="")

    for m in messages:
        role, content = m.fields["Role"], m.fields["Content"]
        if role == "system":
            if state["Prompt"] or state["Response"]:
                flush()
            state["System"] = content
        elif role == "user":
            if state["Response"]:
                flush()
            state["Prompt"] = content
        elif role == "assistant":
            state["Response"] = content
    rounds.append({**state, **_think_values(conv.think)})
    return rounds
