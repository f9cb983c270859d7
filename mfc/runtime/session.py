"""A conversation with one model: what `mfc run` and its REPL drive.

Holds the session's changes on top of the image (`/set parameter`, `/set
system`, `/set template`, `/set format json`), the conversation so far, and the
loaded engine (one sequence) — reloaded only when a load-time option changes.
No terminal I/O here: the CLI and the REPL print.

Images (a model with a projector layer): a turn's images are `MEDIA_MARKER`s at the
start of its user message (where Ollama puts its ``[img-N]`` tags) and travel with the
message (`ImageMessage`), so later turns show the model every earlier image again.
`/save` and `/show modelfile` keep such a conversation's text only: a Modelfile
MESSAGE has no images (Ollama's has none either).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from mfc.diagnostics import codes
from mfc.diagnostics.diagnostic import DiagnosticError
from mfc.modelfile.spec import ParamValue
from mfc.runtime import options as opts
from mfc.runtime.engine import Engine, EngineError, Generation, json_grammar
from mfc.runtime.media import MEDIA_MARKER, strip_markers
from mfc.runtime.model import ChatMessage, ModelImage
from mfc.runtime.output import OutputParser, Parsed, output_parser, think_enabled
from mfc.runtime.prompt import PromptTemplate, choose_template, conversation, render
from mfc.runtime.stats import Stats
from mfc.template import TemplateError

TEMPLATE_SOURCE = "/set template"  # the "file" of a REPL template's diagnostics


def default_engine(image: ModelImage, load: opts.LoadOptions) -> Engine:
    """The engine `mfc run` uses: one sequence (the conversation), and the image's projector
    (Ollama loads the first projector layer)."""
    projector = image.projectors[0] if image.projectors else None
    return Engine(image.weights(), load, image.adapters, n_seq_max=1, projector=projector)


@dataclass(frozen=True, slots=True)
class ImageMessage(ChatMessage):
    """A conversation message with images: ``content`` starts with one `MEDIA_MARKER` each."""

    images: tuple[bytes, ...] = ()


def message_images(messages: Sequence[ChatMessage]) -> list[bytes]:
    """Every image of ``messages``, in order (the order of their markers)."""
    return [image for m in messages if isinstance(m, ImageMessage) for image in m.images]


@dataclass
class Turn:
    """One answer being streamed. Iterate for its content (or `parsed()` for thinking and
    content apart); afterwards `stats` includes the load time (when this turn loaded the
    model) and the exchange is added to the conversation. A cancelled turn is not added."""

    session: Session
    prompt: str  # the user message as the conversation keeps it (image markers first)
    generation: Generation
    load_duration: int
    warnings: list[str] = field(default_factory=list)
    stats: Stats | None = None
    parser: OutputParser | None = None  # None: the raw text is the content
    content: str = ""
    thinking: str = ""
    images: tuple[bytes, ...] = ()  # this turn's images

    def parsed(self) -> Iterator[Parsed]:
        """The answer as it becomes certain: thinking and content split by the model's tags."""
        parser = self.parser
        for piece in self.generation:
            part = parser.feed(piece) if parser is not None else Parsed(piece)
            if part:
                self._add(part)
                yield part
        if parser is not None:
            part = parser.finish()
            if part:
                self._add(part)
                yield part
        self._finish()

    def __iter__(self) -> Iterator[str]:
        for part in self.parsed():
            if part.content:
                yield part.content

    def _add(self, part: Parsed) -> None:
        self.content += part.content
        self.thinking += part.thinking

    def cancel(self) -> None:
        self.generation.cancel()
        self._finish()

    @property
    def text(self) -> str:
        """Everything the model printed, thinking tags included."""
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
            # As Ollama's CLI: the conversation keeps the answer, not the thinking.
            answer = self.content if self.parser is not None else self.text
            user = (
                ImageMessage("user", self.prompt, self.images)
                if self.images
                else ChatMessage("user", self.prompt)
            )
            self.session.history.append(user)
            self.session.history.append(ChatMessage("assistant", answer))


class Session:
    """One model image plus this session's changes, conversation and loaded engine.

    The engine is created on first use and recreated only when a load-time
    option changes; `env` stands in for `os.environ` (MFC_CONTEXT_LENGTH).
    """

    def __init__(
        self,
        image: ModelImage,
        *,
        overrides: Mapping[str, ParamValue] | None = None,
        format: str | None = None,
        think: bool | str | None = None,
        env: Mapping[str, str] | None = None,
    ):
        self.image = image
        self.think = think  # --think / `/set think` (None: think if the model can)
        self.overrides: dict[str, ParamValue] = dict(overrides or {})
        self.system: str | None = None  # /set system (None: the image's SYSTEM)
        self.template: str | None = None  # /set template (None: the image's choice)
        self.format = format  # "json" or None
        self.history: list[ChatMessage] = []
        self._env = env
        self._engine: Engine | None = None
        self._pending_load_ns = 0
        self._warned: set[str] = set()

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
            try:
                self._engine = default_engine(self.image, load)
            except EngineError as exc:
                raise codes.ENGINE_LOAD_FAILED.error(
                    str(exc),
                    hint="check the model with `mfc verify`; rebuild it if its blobs are damaged",
                ) from None
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

    def set_template(self, text: str) -> str | None:
        """`/set template TEXT`: checked like a Modelfile TEMPLATE before it is used.

        An error is refused (DiagnosticError located in the template text, which
        the exception carries as ``sources``); a warning is returned and the
        template is set.
        """
        from mfc.diagnostics.span import Span
        from mfc.template import check_template

        problem = check_template(text, warnings=True)
        if problem is not None and problem.severity == "error":
            lines = text.split("\n")
            line = max(1, min(problem.line, len(lines)))
            column = max(1, min(problem.column, len(lines[line - 1]) + 1))
            start = sum(len(x) + 1 for x in lines[: line - 1]) + column - 1
            end_column = column + (1 if column <= len(lines[line - 1]) else 0)
            span = Span(TEMPLATE_SOURCE, line, column, line, end_column, start, start + 1)
            raise DiagnosticError(
                [
                    codes.INVALID_TEMPLATE(
                        span,
                        f"template error: {problem.message}",
                        "the template was not changed; `/show template` shows the current one",
                    )
                ],
                sources={TEMPLATE_SOURCE: text},
            )
        self.template = text
        return problem.message if problem is not None else None

    def effective_system(self) -> str | None:
        return self.system if self.system is not None else self.image.system

    def prompt_template(self) -> PromptTemplate:
        return choose_template(self.image, self.template)

    def can_think(self) -> bool:
        from mfc.runtime.output import template_supports_thinking

        return template_supports_thinking(self.prompt_template().text)

    def effective_think(self) -> bool | str | None:
        """Ollama's CLI: unset means on for a model that can think, unset otherwise."""
        if self.think is not None:
            return self.think
        return True if self.can_think() else None

    def check_think(self) -> None:
        """`--think` on a model that cannot think is Ollama's error, before anything runs."""
        if think_enabled(self.think) and not self.can_think():
            raise codes.THINKING_UNSUPPORTED.error(
                f'"{self.image.name}" does not support thinking',
                hint="run without --think (`/set nothink`), or use a template that renders"
                " `.Thinking` between thinking tags",
            )

    # -- prompting --------------------------------------------------------------

    def render(self, prompt: str | None, history: list[ChatMessage] | None = None) -> str:
        msgs = conversation(
            self.image,
            self.history if history is None else history,
            prompt,
            system=self.system,
        )
        template = self.prompt_template()
        try:
            return render(template, msgs, image=self.image, think=self.effective_think())
        except TemplateError as exc:
            raise codes.TEMPLATE_RENDER_FAILED.error(
                str(exc),
                hint="fix the template (templates render in a sandbox: no Python attributes);"
                " `mfc template render NAME` shows the prompt",
            ) from None

    def ask(self, prompt: str, images: Sequence[bytes] = ()) -> Turn:
        """Start answering `prompt` in the context of the conversation so far.

        If the conversation leaves too little room for the answer (num_predict
        tokens, or a quarter of num_ctx), the oldest turns are dropped (SYSTEM and
        MESSAGE layers are kept) and a warning says so; a prompt that does not
        fit in num_ctx on its own is an error.

        ``images`` (encoded bytes, e.g. a PNG file's) go with this turn: its user
        message becomes one `MEDIA_MARKER` per image, then the text (a marker typed in
        the text is removed). Each image counts its embeddings against num_ctx. Images
        the engine cannot take (a model without a projector, an unreadable image) raise
        its EngineError here (`mfc run` refuses them before loading anything).
        """
        images = tuple(images)
        prompt = MEDIA_MARKER * len(images) + strip_markers(prompt)
        self.check_think()
        resolved = self.resolved()
        engine = self.engine()
        load_ns, self._pending_load_ns = self._pending_load_ns, 0
        # Settings warnings (a clamped num_ctx …) are said once per session, not per turn.
        warnings = [w for w in resolved.warnings if w not in self._warned]
        self._warned.update(warnings)
        history = list(self.history)
        dropped = 0
        sampling = resolved.sampling()
        # Earlier turns are dropped until the prompt leaves room for the answer.
        room = sampling.num_predict if sampling.num_predict > 0 else engine.n_ctx // 4
        budget = max(1, engine.n_ctx - room)
        while True:
            rendered = self.render(prompt, history)
            shown = self._shown_images(rendered, [*message_images(history), *images])
            if shown:
                n_tokens = engine.count_tokens(rendered, shown)
            else:
                tokens = engine.tokenize(rendered)
                n_tokens = len(tokens)
            if n_tokens <= budget or not history:
                break
            history = history[2:] if len(history) >= 2 else []
            dropped += 2
        if n_tokens >= engine.n_ctx:
            raise codes.PROMPT_TOO_LONG.error(
                f"the prompt is {n_tokens} tokens, more than the context window "
                f"(num_ctx {engine.n_ctx})",
                hint="shorten the prompt or raise num_ctx (`/set parameter num_ctx N`, "
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
        if shown:
            gen = engine.generate(rendered, sampling, grammar=grammar, images=shown)
        else:
            gen = engine.generate(tokens, sampling, grammar=grammar)
        template = self.prompt_template()
        parser = None
        if template.text is not None:
            parser = output_parser(
                template.text,
                prompt=rendered,
                think=self.effective_think(),
                family=self.image.family,
            )
        return Turn(self, prompt, gen, load_ns, warnings, parser=parser, images=images)

    @staticmethod
    def _shown_images(rendered: str, images: list[bytes]) -> list[bytes]:
        """The images whose markers the template rendered: all of them, or the most recent
        ones when it shows only the last messages. A template that repeats a message's
        content shows more markers than images: the engine refuses that prompt."""
        markers = rendered.count(MEDIA_MARKER)
        if markers < len(images):
            return images[len(images) - markers :] if markers else []
        return images

    # -- Modelfile view -----------------------------------------------------------

    def modelfile(self, *, for_save: bool = False) -> str:
        """A Modelfile for this session: `/show modelfile`, and what `/save` builds.

        For `/save` it starts `FROM <this model>@<digest>` (weights, adapters,
        template and params are inherited, from exactly the image running now)
        and adds the session's changes, plus the conversation as MESSAGEs after
        the image's own (a child's MESSAGEs replace the base's, as in Ollama).
        Both go through the one renderer, ``mfc.store.show.render_modelfile``.
        """
        from mfc.store.show import UnrepresentableError, render_modelfile

        image = self.image
        history = [
            ChatMessage(m.role, strip_markers(m.content)) if isinstance(m, ImageMessage) else m
            for m in self.history
        ]
        if for_save:
            base = f"{image.name}@{image.digest}" if image.digest else image.name
            changes = ModelImage(
                image.name,
                params=dict(self.overrides),
                template=self.template,
                system=self.system,
                messages=(*image.messages, *history) if history else (),
            )
            header: tuple[str, ...] = ()
        else:
            base = image.name
            template = self.template if self.template is not None else image.template
            changes = dataclasses.replace(
                image,
                params={**image.params, **self.overrides},
                template=template,
                system=self.effective_system(),
                messages=(*image.messages, *history),
            )
            header = ("# Modelfile of this mfc run session; /save NAME builds it as a new model",)
        try:
            return render_modelfile(changes, base=base, header=header)
        except UnrepresentableError as exc:
            raise codes.SESSION_NOT_WRITABLE.error(
                f"this session cannot be written as a Modelfile: {exc.reason}",
                hint="Modelfiles have no escapes; change the text that cannot be quoted",
            ) from None

    def save_modelfile(self) -> str:
        """The Modelfile `/save` builds; only a model from the store can be saved.

        The build itself is the CLI's (``mfc.cli.repl.save_session``): the runtime
        never imports the builder.
        """
        if not self.image.digest:
            raise codes.SAVE_NEEDS_STORE_MODEL.error(
                "only models from the store can be saved",
                hint="build this GGUF into a model first: `mfc build -t NAME DIR`",
            )
        return self.modelfile(for_save=True)


def parse_parameter(name: str, words: list[str]) -> ParamValue:
    """Type a `/set parameter` value with the parameter table (the one source of types)."""
    from mfc.modelfile.params import PARAMETERS, ParamValueError, parse_param_value, suggest

    spec = PARAMETERS.get(name)
    if spec is None:
        close = suggest(name)
        raise codes.BAD_SESSION_PARAMETER.error(
            f"unknown parameter `{name}`",
            hint=f"did you mean `{close}`?" if close else "`/show parameters` lists the model's",
        )
    if spec.deprecated:
        raise codes.BAD_SESSION_PARAMETER.error(
            f"parameter `{name}` is deprecated and has no effect",
            hint="leave it out; `/show parameters` lists the model's",
        )
    if not words:
        raise codes.BAD_SESSION_PARAMETER.error(
            f"missing a value for `{name}`", hint=f"usage: /set parameter {name} V"
        )
    try:
        if spec.repeatable:
            return tuple(str(parse_param_value(spec, w)) for w in words)
        return parse_param_value(spec, " ".join(words))
    except ParamValueError as exc:
        raise codes.BAD_SESSION_PARAMETER.error(exc.message, hint=exc.hint) from None
