"""The checked, typed Modelfile: what the builder compiles.

Produced by the semantic pass (ARG substitution done, parameter values typed
through the parameter table); consumed by ``mfc.build``. Values are as the
Modelfile wrote them after substitution — paths are *not* resolved here
(parsing never touches the disk), the builder resolves them relative to
``ModelSpec.source``'s directory.
"""

from __future__ import annotations

from dataclasses import dataclass

from mfc.diagnostics.span import Span

ParamScalar = int | float | bool | str
ParamValue = ParamScalar | tuple[str, ...]  # tuple only for repeatable params (stop)


@dataclass(frozen=True, slots=True)
class Text:
    """A text-valued instruction (TEMPLATE, SYSTEM, LICENSE, REQUIRES …)."""

    value: str
    span: Span


@dataclass(frozen=True, slots=True)
class BaseRef:
    """FROM / DRAFT: a GGUF path, a directory, another Modelfile, a model name,
    or ``name@sha256:<hex>`` — told apart by the builder, not here."""

    ref: str
    span: Span


@dataclass(frozen=True, slots=True)
class AdapterRef:
    path: str
    scale: float  # 1.0 unless `ADAPTER --scale=F PATH`
    span: Span


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    value: ParamValue
    span: Span


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # system | user | assistant | tool
    content: str
    span: Span


@dataclass(frozen=True, slots=True)
class ModelSpec:
    source: str  # path of the Modelfile ("-" for stdin)
    base: BaseRef  # the effective FROM (the last FROM line)
    # The FROM lines above ``base`` when every FROM line is a local path: Ollama merges
    # those files into one model (a model and its projector), so the builder reads each
    # and decides — a projector joins the model, a second model is MF107 (last wins).
    # Empty otherwise: earlier FROM lines were MF107 here and are ignored.
    merged_froms: tuple[BaseRef, ...] = ()
    draft: BaseRef | None = None
    adapters: tuple[AdapterRef, ...] = ()  # in file order; all are applied
    parameters: tuple[Param, ...] = ()  # one per name, file order; `stop` gathered into a tuple
    template: Text | None = None
    system: Text | None = None
    licenses: tuple[Text, ...] = ()
    messages: tuple[Message, ...] = ()
    requires: Text | None = None
    renderer: Text | None = None
    parser: Text | None = None
    build_args: tuple[tuple[str, str], ...] = ()  # the ARG values used, sorted by name

    def parameter(self, name: str) -> ParamValue | None:
        for p in self.parameters:
            if p.name == name:
                return p.value
        return None
