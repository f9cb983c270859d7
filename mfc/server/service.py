"""What a generation or embedding request means, whichever API spelled it.

Ollama's native API, the OpenAI API and the Anthropic API are pure translations
(``ollama.py``, ``openai.py``, ``anthropic.py``): each turns its request into
Ollama's request model (``ol.ChatRequest``, ``ol.GenerateRequest``,
``ol.EmbedRequest``) — as Ollama's own ``openai/`` package does — and spells
the events below in its own wire format. Everything in between lives here,
once: opening the image, capability checks, options, the format's grammar,
the prompt, scheduling, and parsing the model's output into content, thinking
and tool calls.

Errors before the first event are ``ApiError`` with a status (each dialect
shapes the body); ``param`` names the request field at fault where one is.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import secrets
import string
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from mfc.diagnostics.diagnostic import DiagnosticError
from mfc.runtime import media
from mfc.runtime.model import ModelImage
from mfc.runtime.output import OutputParser, Parsed, output_parser, thinking_tags
from mfc.runtime.prompt import choose_template
from mfc.server import inference
from mfc.server import ollama as ol
from mfc.server.http import ApiError, first_or_error, prepend, until_disconnect
from mfc.server.inference import Conversation, Done, Piece, Prompt, PromptError
from mfc.server.models import InvalidModelName, ModelNotFound, Prepared, open_image, prepare
from mfc.server.runners import RunnerError
from mfc.server.scheduler import QueueFull
from mfc.server.state import ServerState

log = logging.getLogger("mfc.server")

# -- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    """One parsed tool call. ``arguments`` is a JSON object (the OpenAI dialect encodes it)."""

    id: str
    index: int
    name: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True)
class Delta:
    """What became certain with one engine step (any field may be empty)."""

    content: str = ""
    thinking: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Final:
    """The end of a generation: why it stopped and what it cost."""

    done_reason: str  # "stop" | "length" (Ollama's words; a cancelled request reports "stop")
    metrics: ol.Metrics
    context: tuple[int, ...] = ()  # prompt + answer tokens (/api/generate's ``context``)
    warnings: tuple[str, ...] = ()
    stop_sequence: str = ""  # the stop string that ended a "stop" answer ("" for end of turn)


Event = Delta | Final


@dataclass(frozen=True)
class Outcome:
    """A whole non-streamed answer: the deltas joined, and the final event."""

    content: str
    thinking: str
    tool_calls: tuple[ToolCall, ...]
    logprobs: tuple[Mapping[str, Any], ...]
    final: Final


def new_call_id() -> str:
    """``call_`` and 8 random letters/digits, as Ollama names tool calls it parsed."""
    alphabet = string.ascii_lowercase + string.digits
    return "call_" + "".join(secrets.choice(alphabet) for _ in range(8))


# -- errors ---------------------------------------------------------------------------------------


def runner_status(exc: RunnerError) -> int:
    return 503 if exc.kind == "shutdown" else 500


@contextlib.contextmanager
def as_http() -> Iterator[None]:
    """Scheduling and prompt failures as HTTP statuses: a full queue 503, a prompt that
    cannot be built or does not fit 400, a runner that failed 500 (503 while shutting down)."""
    try:
        yield
    except QueueFull as exc:
        raise ApiError(503, str(exc)) from None
    except PromptError as exc:
        raise ApiError(400, str(exc)) from None
    except RunnerError as exc:
        raise ApiError(runner_status(exc), str(exc)) from None


def error_text(exc: Exception) -> str:
    """What a stream that already started says about a failure (its last line or event)."""
    if isinstance(exc, (RunnerError, PromptError, ApiError)):
        return str(exc)
    return f"internal error: {exc}"


# -- the steps every request shares ----------------------------------------------------------------


def keep_alive(state: ServerState, value: Any) -> float:
    try:
        return ol.resolve_keep_alive(value, state.config.keep_alive)
    except ol.BadRequest as exc:
        raise ApiError(400, exc.message, param="keep_alive") from None


async def open_model(state: ServerState, name: str | None) -> ModelImage:
    """The model's image, read in a thread (the view may read a GGUF header from disk)."""
    return await asyncio.to_thread(_open_sync, state, name)


def _open_sync(state: ServerState, name: str | None) -> ModelImage:
    if not name:
        raise ApiError(400, "model is required", param="model")
    try:
        return open_image(state.store, name)
    except InvalidModelName as exc:
        raise ApiError(400, str(exc), param="model") from None
    except ModelNotFound:
        raise ApiError(404, f'model "{name}" not found', param="model") from None
    except DiagnosticError as exc:
        raise ApiError(500, "; ".join(d.message for d in exc.diagnostics)) from None


def require(
    image: ModelImage,
    name: str,
    *,
    insert: bool = False,
    tools: bool = False,
    think: Any = None,
    relax_thinking: bool = False,
) -> bool | str | None:
    """Ollama's capability checks: a request may only use what the model's template supports.

    Returns the ``think`` value to use: as Ollama does, a model that can think thinks unless
    told not to (None becomes True); ``think: true`` on one that cannot is a 400 — or, for
    the Anthropic API (``relax_thinking``, which Claude Code always asks to think), None.
    """
    caps = set(image.capabilities())
    wanted = [("insert", insert, "suffix"), ("tools", tools, "tools")]
    for cap, asked, param in wanted:
        if asked and cap not in caps:
            raise ApiError(400, f'"{name}" does not support {cap}', param=param)
    if "thinking" in caps:
        return True if think is None else think
    if think not in (None, False):
        if relax_thinking:
            log.warning('"%s" does not support thinking; answering without it', name)
            return None
        raise ApiError(400, f'"{name}" does not support thinking', param="think")
    return think


def prepare_options(
    state: ServerState, image: ModelImage, options: Mapping[str, Any] | None
) -> Prepared:
    try:
        overrides = ol.resolve_options(options).values
    except ol.BadRequest as exc:
        raise ApiError(400, exc.message, param="options") from None
    try:
        return prepare(
            image,
            overrides,
            context_length=state.config.context_length,
            num_parallel=state.config.num_parallel,
            flash_attention=state.config.flash_attention,
            kv_cache_type=state.config.kv_cache_type,
        )
    except (ValueError, TypeError) as exc:
        raise ApiError(400, f"options: {exc}", param="options") from None


def grammar(value: Any) -> str | None:
    """The request's ``format`` as GBNF, converted here so a bad schema is a 400."""
    from mfc.runtime.structured import SchemaError, grammar_for

    try:
        return grammar_for(ol.resolve_format(value))
    except ol.BadRequest as exc:
        raise ApiError(400, exc.message, param="format") from None
    except SchemaError as exc:
        raise ApiError(400, f"format: {exc}", param="format") from None


def template_message(m: ol.Message) -> dict[str, Any]:
    """A chat message as templates see it (Ollama's field names; empty fields left out)."""
    out = m.model_dump(by_alias=True, exclude_defaults=True)
    out.setdefault("role", m.role)
    out.setdefault("content", m.content)
    return out


# -- a prepared generation --------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One generation, checked and rendered, ready to be scheduled (``events``)."""

    state: ServerState
    name: str
    image: ModelImage
    prepared: Prepared
    keep_alive: float
    info: dict[str, Any]
    prompt: str  # the rendered prompt ("" when the request only loads or unloads)
    template: str | None  # the template text the prompt came from (None: raw)
    grammar: str | None = None
    tools: tuple[Mapping[str, Any], ...] | None = None
    think: bool | str | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    context: tuple[int, ...] | None = None  # /api/generate's earlier tokens
    raw: bool = False
    # the images the prompt's media.MEDIA_MARKER slots stand for, in order (encoded bytes)
    images: tuple[bytes, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.prompt

    @property
    def debug_prompt(self) -> str:
        """The prompt ``_debug_render_only`` shows: image slots as Ollama's ``[img-N]``."""
        return Prompt(self.prompt, self.images).debug_text()

    def parser(self) -> OutputParser:
        return output_parser(
            self.template,
            prompt=self.prompt,
            tools=self.tools,
            think=self.think,
            family=self.image.family,
        )

    async def events(self) -> AsyncGenerator[Event, None]:
        """Stream the generation as deltas, then one ``Final``. Closing it cancels the request.

        A ``format`` on a model that thinks is applied after the thinking, as Ollama does: a
        grammar from the first token would forbid the thinking tags. The first pass runs
        unconstrained until the answer starts; then the prompt plus the thinking (up to the
        closing tag) is decoded again under the grammar, so only the answer is constrained.
        """
        parser = None if self.raw else self.parser()
        prompt: str | list[int] = self.prompt
        if self.context and self.images:
            prompt = await self._text_with_context()
        elif self.context:
            prompt = await self._tokens_with_context()
        calls = 0
        if self.grammar and parser is not None and parser.splits_thinking and not self.context:
            first: list[Event | _Resume] = []
            async for ev in self._think_first(parser, prompt):
                first.append(ev)
                if isinstance(ev, Final):  # the answer ended within its thinking
                    for item in first:
                        assert not isinstance(item, _Resume)
                        yield item
                    return
            raw = first.pop()
            assert isinstance(raw, _Resume)
            for item in first:
                assert not isinstance(item, _Resume)
                yield item
            async for item in self._run(raw.prompt, self._answer_parser(), self.grammar, calls):
                yield item
            return
        async for item in self._run(prompt, parser, self.grammar, calls):
            yield item

    def _answer_parser(self) -> OutputParser:
        return output_parser(self.template, tools=self.tools, think=False, family=self.image.family)

    async def _think_first(
        self, parser: OutputParser, prompt: str | list[int]
    ) -> AsyncGenerator[Event | _Resume, None]:
        """The unconstrained first pass: thinking deltas, then a ``_Resume`` with the prompt
        to constrain (or a ``Final`` if the generation ended first). Its cost is not in the
        second pass's Final (it is cancelled, and reports none), as in Ollama."""
        tags = thinking_tags(self.template)
        closing = tags[1] if tags else ""
        raw: list[str] = []
        thought = False
        gen = self._generate(prompt, None)
        async with contextlib.aclosing(gen):
            async for ev in gen:
                if isinstance(ev, Done):
                    rest = parser.finish()
                    if rest.thinking or rest.content:
                        yield Delta(rest.content, rest.thinking)
                    yield _final(ev)
                    return
                raw.append(ev.text)
                parsed = parser.feed(ev.text)
                thought = thought or bool(parsed.thinking)
                if parsed.thinking:
                    yield Delta(thinking=parsed.thinking, logprobs=ev.logprobs)
                if thought and (parsed.content or parsed.tool_calls):
                    text = "".join(raw)
                    cut = text.find(closing) if closing else -1
                    if cut < 0:  # no closing tag in the text: constrain from here on
                        cut = len(text) - len(parsed.content)
                    else:
                        cut += len(closing)
                    assert isinstance(prompt, str)  # no two passes over a token context
                    # the model's text is not an image slot: the resent prompt keeps the
                    # request's images, and exactly their markers
                    yield _Resume(prompt + media.strip_markers(text[:cut]))
                    return
        # the stream ended without a Done: the runner's error surfaces from _generate

    def _generate(
        self, prompt: str | list[int], grammar: str | None
    ) -> AsyncGenerator[Piece | Done, None]:
        return inference.generate(
            self.state.scheduler,
            self.name,
            self.prepared,
            prompt,
            keep_alive=self.keep_alive,
            grammar=grammar,
            logprobs=self.logprobs,
            top_logprobs=self.top_logprobs,
            info=self.info,
            images=self.images,
        )

    async def _run(
        self,
        prompt: str | list[int],
        parser: OutputParser | None,
        grammar: str | None,
        calls: int,
    ) -> AsyncGenerator[Event, None]:
        async for ev in self._generate(prompt, grammar):
            if isinstance(ev, Piece):
                parsed = parser.feed(ev.text) if parser else Parsed(content=ev.text)
                delta, calls = _delta(parsed, ev.logprobs, calls)
                if delta is not None:
                    yield delta
            else:
                if parser is not None:
                    delta, calls = _delta(parser.finish(), (), calls)
                    if delta is not None:
                        yield delta
                yield _final(ev)
                return

    async def _call(self, op: str, **fields: Any) -> Any:
        """One runner op (tokenize, detokenize) on this job's model, loading it if needed."""
        async with self.state.scheduler.use(
            self.name, self.prepared.spec, None, self.info
        ) as model:
            return await model.runner.call(op, **fields)

    async def _tokens_with_context(self) -> list[int]:
        new = await self._call("tokenize", text=self.prompt)
        return [int(t) for t in self.context or ()] + [int(t) for t in new]

    async def _text_with_context(self) -> str:
        """``context`` before a prompt with images, as Ollama does it for every request: the
        earlier tokens turned back into text (a token prompt has no image slots)."""
        text = await self._call("detokenize", tokens=list(self.context or ()))
        return media.strip_markers(str(text)) + self.prompt

    async def load_only(self) -> str:
        """Load the model (``"load"``), or unload it when keep_alive is 0 (``"unload"``)."""
        if self.keep_alive <= 0:
            await self.state.scheduler.unload(self.prepared.spec.digest)
            return "unload"
        with as_http():
            async with self.state.scheduler.use(
                self.name, self.prepared.spec, self.keep_alive, self.info
            ):
                pass
        return "load"


def _delta(
    parsed: Parsed, logprobs: tuple[Mapping[str, Any], ...], calls: int
) -> tuple[Delta | None, int]:
    if not parsed and not logprobs:
        return None, calls
    tool_calls = []
    for call in parsed.tool_calls:
        tool_calls.append(ToolCall(new_call_id(), calls, call.name, dict(call.arguments)))
        calls += 1
    delta = Delta(parsed.content, parsed.thinking, tuple(tool_calls), logprobs)
    return delta, calls


@dataclass(frozen=True)
class _Resume:
    """The first pass of a thinking model's structured answer ended: constrain ``prompt``."""

    prompt: str


def _final(done: Done) -> Final:
    s = done.stats
    reason = str(s.get("done_reason", "stop"))
    metrics = ol.Metrics(
        total_duration=int(done.total_ns),
        load_duration=int(done.load_ns),
        prompt_eval_count=int(s.get("prompt_eval_count", 0)),
        prompt_eval_duration=int(s.get("prompt_eval_duration", 0)),
        eval_count=int(s.get("eval_count", 0)),
        eval_duration=int(s.get("eval_duration", 0)),
    )
    return Final(
        "stop" if reason == "cancel" else reason,
        metrics,
        done.tokens,
        tuple(done.warnings),
        str(s.get("stop_sequence") or ""),
    )


# -- images ----------------------------------------------------------------------------------------


async def check_images(
    image: ModelImage, name: str, sent: Sequence[tuple[str, str]]
) -> list[bytes]:
    """The request's images (``(field, base64)`` pairs, in conversation order) as bytes, each
    checked before the request is queued: a model without a projector refuses them, and an
    image `media.check_image` refuses (not an image, damaged, a decompression bomb, over the
    byte or pixel limit) is a 400 naming its field. Decoding runs in a thread."""
    if not sent:
        return []
    if "vision" not in image.capabilities():
        field = sent[0][0]
        raise ApiError(
            400,
            f'{field}: "{name}" does not support images (the model has no vision projector)',
            param=field,
        )
    return await asyncio.to_thread(_decode_images, sent)


def _decode_images(sent: Sequence[tuple[str, str]]) -> list[bytes]:
    out = []
    for field, text in sent:
        # the request model checked the base64 (Go's rules: padding required, newlines skipped)
        data = base64.b64decode(text.replace("\r", "").replace("\n", ""))
        try:
            media.check_image(data)
        except media.ImageError as exc:
            raise ApiError(400, f"{field}: {exc}", param=field) from None
        out.append(data)
    return out


def _fields(names: Sequence[str] | None, native: Sequence[str]) -> list[str]:
    """The dialect's names for the images (``names``, in conversation order) where it gave
    them, else the native ones."""
    if names is not None and len(names) == len(native):
        return list(names)
    return list(native)


# -- the two generation requests --------------------------------------------------------------


async def chat_job(
    state: ServerState,
    req: ol.ChatRequest,
    *,
    relax_thinking: bool = False,
    image_fields: Sequence[str] | None = None,
) -> Job:
    """Check and render a chat request (Ollama's ChatHandler up to the runner call).

    ``image_fields`` names the request's images as the client's dialect spells them (OpenAI's
    ``messages[1].content[0]``), in conversation order, for the error texts."""
    alive = keep_alive(state, req.keep_alive)
    image = await open_model(state, req.model)
    think = require(
        image, req.model, tools=bool(req.tools), think=req.think, relax_thinking=relax_thinking
    )
    prepared = prepare_options(state, image, req.options)
    gbnf = grammar(req.format)
    info = state.model_info(req.model, image)
    native: list[str] = []
    sent: list[str] = []
    for i, m in enumerate(req.messages):
        native.extend(f"messages[{i}].images[{k}]" for k in range(len(m.images or ())))
        sent.extend(m.images or ())
    names = _fields(image_fields, native)
    decoded = iter(await check_images(image, req.model, list(zip(names, sent, strict=True))))
    tools = tuple(t.model_dump(by_alias=True, exclude_defaults=True) for t in req.tools or [])
    template = choose_template(image)
    prompt = Prompt("")
    if req.messages or req.debug_render_only:
        messages = []
        for m in req.messages:
            msg = template_message(m)
            msg.pop("images", None)  # templates see the image slots in the content, not base64
            if m.images:
                msg["images"] = [next(decoded) for _ in m.images]
            messages.append(msg)
        conv = Conversation(messages, tools=tools or None, think=think)
        prompt = await _build(image, conv)
    return Job(
        state,
        req.model,
        image,
        prepared,
        alive,
        info,
        prompt.text,
        template.text,
        grammar=gbnf,
        tools=tools or None,
        think=think,
        logprobs=req.logprobs,
        top_logprobs=req.top_logprobs,
        images=prompt.images,
    )


async def generate_job(state: ServerState, req: ol.GenerateRequest) -> Job:
    """Check and render a generate request (Ollama's GenerateHandler up to the runner call).

    Images go where Ollama's chat-like flow puts them (before the prompt, or at its
    ``[img]``), in raw mode at the prompt's ``[img-N]`` tags. ``context`` is continued as
    tokens, or with images as its text (Ollama's way for every request: a token prompt has no
    image slots)."""
    alive = keep_alive(state, req.keep_alive)
    if req.width or req.height or req.steps:
        raise ApiError(400, "image generation models are not currently supported")
    if req.raw and (req.template or req.system or req.context):
        raise ApiError(400, "raw mode does not support template, system, or context")
    image = await open_model(state, req.model)
    think = require(image, req.model, insert=bool(req.suffix), think=req.think)
    prepared = prepare_options(state, image, req.options)
    gbnf = grammar(req.format)
    info = state.model_info(req.model, image)
    sent = [(f"images[{k}]", data) for k, data in enumerate(req.images or ())]
    images = await check_images(image, req.model, sent)
    template = choose_template(image, req.template or None, "the request's `template`")
    if not req.prompt and not req.suffix and not req.debug_render_only:
        prompt = Prompt("")
    elif req.raw:
        try:
            prompt = inference.raw_prompt(req.prompt, images)
        except PromptError as exc:
            raise ApiError(400, str(exc), param="images") from None
    else:
        message: dict[str, Any] = {"role": "user", "content": req.prompt}
        if images:
            message["images"] = images
        conv = Conversation(
            [message],
            think=think,
            template_override=req.template or None,
            system_override=req.system or None,
            image_messages=False,
            extra={"suffix": req.suffix} if req.suffix else {},
        )
        prompt = await _build(image, conv)
    return Job(
        state,
        req.model,
        image,
        prepared,
        alive,
        info,
        prompt.text,
        None if req.raw else template.text,
        grammar=gbnf,
        think=think,
        logprobs=req.logprobs,
        top_logprobs=req.top_logprobs,
        context=tuple(int(t) for t in req.context) if req.context else None,
        raw=req.raw,
        images=prompt.images,
    )


async def _build(image: ModelImage, conv: Conversation) -> Prompt:
    try:
        return await asyncio.to_thread(inference.build_prompt, image, conv)
    except PromptError as exc:
        raise ApiError(400, str(exc)) from None


# -- running a job for a request ---------------------------------------------------------------


async def stream(request: Request, job: Job) -> AsyncIterator[Event]:
    """The job's events, with failures before the first one raised as ``ApiError``.

    Until the first event there is no response whose disconnect Starlette watches: a
    request waiting for a slot (or for its model to load) must still notice its client left.
    """

    async def guarded() -> AsyncIterator[Event]:
        events = job.events()
        with as_http():
            first = await first_or_error(events)  # type: ignore[arg-type]
        return prepend(first, events)  # type: ignore[arg-type,return-value]

    result: AsyncIterator[Event] = await until_disconnect(request, guarded())
    return result


async def collect(request: Request, job: Job) -> Outcome:
    """Run the job to its end and join the deltas (non-streamed answers)."""

    async def run() -> Outcome:
        content: list[str] = []
        thinking: list[str] = []
        calls: list[ToolCall] = []
        logprobs: list[Mapping[str, Any]] = []
        events = job.events()
        # Closed here, not whenever the garbage collector gets to it: closing releases the
        # model (keep_alive 0 unloads it) before the answer is sent.
        async with contextlib.aclosing(events):
            with as_http():
                async for ev in events:
                    if isinstance(ev, Delta):
                        content.append(ev.content)
                        thinking.append(ev.thinking)
                        calls.extend(ev.tool_calls)
                        logprobs.extend(ev.logprobs)
                    else:
                        return Outcome(
                            "".join(content),
                            "".join(thinking),
                            tuple(calls),
                            tuple(logprobs),
                            ev,
                        )
        raise ApiError(500, "the generation ended without a result")

    result: Outcome = await until_disconnect(request, run())
    return result


# -- embeddings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]
    prompt_tokens: int
    metrics: ol.Metrics


async def embed(request: Request, state: ServerState, req: ol.EmbedRequest) -> Embeddings:
    """Vectors for ``req.input`` (Ollama's /api/embed: normalised; ``dimensions`` truncates
    and re-normalises)."""
    alive = keep_alive(state, req.keep_alive)
    image = await open_model(state, req.model)
    prepared = prepare_options(state, image, req.options)
    inputs = [req.input] if isinstance(req.input, str) else list(req.input or [])
    if inputs == [""]:
        inputs = []
    start = time.perf_counter_ns()
    if not inputs:
        return Embeddings([], 0, ol.Metrics())
    vectors, count, load_ns = await embed_raw(
        request, state, req.model, image, prepared, inputs, req.truncate is not False, alive
    )
    if req.dimensions:
        vectors = [_truncate_normalize(v, req.dimensions) for v in vectors]
    metrics = ol.Metrics(
        total_duration=time.perf_counter_ns() - start,
        load_duration=load_ns,
        prompt_eval_count=count,
    )
    return Embeddings(vectors, count, metrics)


async def embed_raw(
    request: Request,
    state: ServerState,
    name: str,
    image: ModelImage,
    prepared: Prepared,
    inputs: Sequence[str],
    truncate: bool,
    alive: float,
) -> tuple[list[list[float]], int, int]:
    info = state.model_info(name, image)
    with as_http():
        result: tuple[list[list[float]], int, int] = await until_disconnect(
            request,
            inference.embed(
                state.scheduler,
                name,
                prepared,
                inputs,
                truncate=truncate,
                keep_alive=alive,
                info=info,
            ),
        )
    return result


def _truncate_normalize(vector: list[float], n: int) -> list[float]:
    head = vector[:n]
    norm = math.sqrt(sum(x * x for x in head))
    return [x / norm for x in head] if norm > 0 else head
