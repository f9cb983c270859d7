"""A conversation with one model: what `mfc run` and its REPL drive.

Holds the session's changes on top of the image (`/set parameter`, `/set
system`, `/set template`, `/set format json`), the conversation so far, and the
loaded engine — reloaded only when a load-time option changes. No terminal I/O
here: the CLI and the REPL print; the later HTTP server can reuse this.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfc.modelfile.diagnostics import Diagnostic, DiagnosticError, Severity
from mfc.modelfile.spec import ParamValue
from mfc.runtime import options as opts
from mfc.runtime.engine import Engine, Generation, json_grammar
from mfc.runtime.model import ChatMessage, ModelImage
from mfc.runtime.prompt import PromptTemplate, choose_template, conversation, render
from mfc.runtime.stats import Stats

EngineFactory = Callable[[ModelImage, opts.LoadOptions], Engine]


def default_engine(image: ModelImage, load: opts.LoadOptions) -> Engine:
    return Engine(image.model_path, load, image.adapters)


def _error(code: str, message: str, hint: str | None = None) -> DiagnosticError:
    return DiagnosticError([Diagnostic(code, Severity.ERROR, message, None, hint=hint)])


@dataclass
class Turn:
    """One answer being streamed. Iterate for text; afterwards `stats` includes
    the load time (when this turn loaded the model) and the exchange is added
    to the conversation. A cancelled turn is not added."""

    session: Session
    prompt: str
    generation: Generation
    load_duration: int
    warnings: list[str] = field(default_factory=list)
    stats: Stats | None = None

    def __iter__(self) -> Iterator[str]:
        yield from self.generation
        self._finish()

    def cancel(self) -> None:
        self.generation.cancel()
        self._finish()

    @property
    def text(self) -> str:
        return self.generation.text

    def result(self) -> str:
        for _ in self:
            pass
        return self.text

    def _finish(self) -> None:
        if self.stats is not None or self.generation.stats is None:
            return
        s = self.generation.stats
        self.warnings.extend(self.generation.warnings)
        self.stats = Stats(
            total_duration=s.total_duration + self.load_duration,
            load_duration=self.load_duration,
            prompt_eval_count=s.prompt_eval_count,
            prompt_eval_duration=s.prompt_eval_duration,
            eval_count=s.eval_count,
            eval_duration=s.eval_duration,
            done_reason=s.done_reason,
        )
        if s.done_reason != "cancel":
            self.session.history.append(ChatMessage("user", self.prompt))
            self.session.history.append(ChatMessage("assistant", self.text))


class Session:
    def __init__(
        self,
        image: ModelImage,
        *,
        overrides: Mapping[str, ParamValue] | None = None,
        format: str | None = None,
        env: Mapping[str, str] | None = None,
        engine_factory: EngineFactory = default_engine,
    ):
        self.image = image
        self.overrides: dict[str, ParamValue] = dict(overrides or {})
        self.system: str | None = None  # /set system (None: the image's SYSTEM)
        self.template: str | None = None  # /set template (None: the image's choice)
        self.format = format  # "json" or None
        self.history: list[ChatMessage] = []
        self._env = env
        self._engine_factory = engine_factory
        self._engine: Engine | None = None
        self._pending_load_ns = 0

    # -- state ------------------------------------------------------------------

    def resolved(self) -> opts.Resolved:
        return opts.resolve(
            self.image.params,
            self.overrides,
            trained_ctx=self.image.gguf.context_length,
            env=self._env,
        )

    def engine(self) -> Engine:
        """The loaded engine, (re)loading it if a load-time option changed."""
        load = self.resolved().load()
        if self._engine is not None and self._engine.load_options != load:
            self._engine.close()
            self._engine = None
        if self._engine is None:
            self._engine = self._engine_factory(self.image, load)
            self._pending_load_ns = self._engine.load_duration_ns
        return self._engine

    @property
    def loaded(self) -> Engine | None:
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def load(self, image: ModelImage) -> None:
        """`/load NAME`: switch models; session changes and the conversation are dropped."""
        self.close()
        self.image = image
        self.overrides.clear()
        self.system = None
        self.template = None
        self.history.clear()

    def clear(self) -> None:
        self.history.clear()

    def set_parameter(self, name: str, words: list[str]) -> ParamValue:
        """`/set parameter NAME VALUE...`: type-checked through the parameter table."""
        value = parse_parameter(name, words)
        self.overrides[name] = value
        return value

    def effective_system(self) -> str | None:
        return self.system if self.system is not None else self.image.system

    def prompt_template(self) -> PromptTemplate:
        return choose_template(self.image, self.template)

    # -- prompting --------------------------------------------------------------

    def render(self, prompt: str | None, history: list[ChatMessage] | None = None) -> str:
        msgs = conversation(
            self.image,
            self.history if history is None else history,
            prompt,
            system=self.system,
        )
        return render(self.prompt_template(), msgs, image=self.image)

    def ask(self, prompt: str) -> Turn:
        """Start answering `prompt` in the context of the conversation so far.

        If the whole conversation no longer fits in num_ctx, the oldest turns are
        dropped (SYSTEM and MESSAGE layers are kept) and a warning says so; a
        prompt that does not fit on its own is an error.
        """
        resolved = self.resolved()
        engine = self.engine()
        load_ns, self._pending_load_ns = self._pending_load_ns, 0
        warnings = list(resolved.warnings)
        history = list(self.history)
        dropped = 0
        while True:
            tokens = engine.tokenize(self.render(prompt, history))
            if len(tokens) < engine.n_ctx or not history:
                break
            history = history[2:] if len(history) >= 2 else []
            dropped += 2
        if len(tokens) >= engine.n_ctx:
            raise _error(
                "MF303",
                f"the prompt is {len(tokens)} tokens, more than the context window "
                f"(num_ctx {engine.n_ctx})",
                "shorten the prompt or raise num_ctx (`/set parameter num_ctx N`, "
                "`PARAMETER num_ctx N`, or MFC_CONTEXT_LENGTH); the model was trained "
                f"for {self.image.gguf.context_length or 'an unknown number of'} tokens",
            )
        if dropped:
            self.history[:] = history
            warnings.append(
                f"dropped the {dropped} oldest messages of the conversation to fit "
                f"num_ctx {engine.n_ctx}"
            )
        grammar = json_grammar() if self.format == "json" else None
        gen = engine.generate(tokens, resolved.sampling(), grammar=grammar)
        return Turn(self, prompt, gen, load_ns, warnings)

    # -- Modelfile view -----------------------------------------------------------

    def modelfile(self, *, for_save: bool = False) -> str:
        """A Modelfile for this session: `/show modelfile`, and what `/save` builds.

        For `/save` it starts `FROM <this model>` (so weights, adapters, template
        and params are inherited) and adds the session's changes and the
        conversation as MESSAGEs (after the image's own, which a MESSAGE in a
        child Modelfile replaces, as in Ollama).
        """
        lines = [f"FROM {self.image.name}"]
        if not for_save:
            lines = [
                "# Modelfile for this session (mfc run); to build on it, keep this FROM line",
                *lines,
            ]
            for adapter in self.image.adapters:
                scale = "" if adapter.scale == 1.0 else f" --scale={adapter.scale:g}"
                lines.append(f"# ADAPTER{scale} {adapter.path}")
        params = dict(self.overrides) if for_save else {**self.image.params, **self.overrides}
        for name in sorted(params):
            for value in _values(params[name]):
                lines.append(f"PARAMETER {name} {_param_text(value)}")
        template = self.template if for_save else (self.template or self.image.template)
        if template is not None:
            lines.append(f"TEMPLATE {_quote(template)}")
        system = self.system if for_save else self.effective_system()
        if system is not None:
            lines.append(f"SYSTEM {_quote(system)}")
        messages = [*self.image.messages, *self.history]
        if for_save and not self.history:
            messages = []  # inherited through FROM
        for m in messages:
            lines.append(f"MESSAGE {m.role} {_quote(m.content)}")
        if not for_save:
            for text in self.image.licenses:
                lines.append(f"LICENSE {_quote(text)}")
        return "\n".join(lines) + "\n"

    def save(self, name: str, store: Any = None) -> Any:
        """`/save NAME`: build a real model through the builder (FROM this one)."""
        from mfc.build import build_text

        if self.image.digest == "":
            raise _error(
                "MF304",
                "only models from the store can be saved",
                "build this GGUF into a model first: `mfc build -t NAME DIR`",
            )
        text = self.modelfile(for_save=True)
        return build_text(text, Path.cwd(), name, store=store)


def _values(value: ParamValue) -> tuple[Any, ...]:
    return value if isinstance(value, tuple) else (value,)


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    if text == "" or any(c.isspace() or c in '"#' for c in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _quote(text: str) -> str:
    if '"""' in text:
        raise _error(
            "MF305",
            'text containing `"""` cannot be written into a Modelfile',
            'remove the `"""` from the system prompt, template or message',
        )
    return f'"""{text}"""'


def parse_parameter(name: str, words: list[str]) -> ParamValue:
    """Type a `/set parameter` value with the parameter table (the one source of types)."""
    from mfc.modelfile import params as table_module

    table = opts.parameter_table()
    spec = table.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, list(table), n=1, cutoff=0.75)
        raise _error(
            "MF306",
            f"unknown parameter `{name}`",
            f"did you mean `{close[0]}`?" if close else "`/show parameters` lists them",
        )
    if not words:
        raise _error("MF306", f"missing a value for `{name}`", f"usage: /set parameter {name} V")
    if getattr(spec, "repeatable", False):
        return tuple(_parse_one(table_module, spec, w) for w in words)
    return _parse_one(table_module, spec, " ".join(words))


def _parse_one(table_module: Any, spec: Any, text: str) -> Any:
    try:
        result = table_module.parse_param_value(spec, text)
    except (ValueError, TypeError) as exc:
        raise _error("MF306", f"invalid value for `{spec.name}`: {exc}") from None
    if isinstance(result, DiagnosticError):
        raise result
    if isinstance(result, tuple) and len(result) == 2 and not isinstance(result[1], str):
        value, problem = result
        if problem:
            raise _error("MF306", f"invalid value for `{spec.name}`: {problem}")
        return value
    return result
