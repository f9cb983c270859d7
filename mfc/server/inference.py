"""One generation or embedding request, from a prepared model to a stream of events.

Dialect-free: the Ollama, OpenAI and Anthropic handlers all call these and
only differ in how they spell the events. The prompt is rendered here, in the
server process (templates are Python, in a sandbox); tokenizing, decoding and
sampling happen in the model's runner.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mfc.runtime.model import ChatMessage, ModelImage
from mfc.runtime.prompt import PromptTemplate, choose_template, render
from mfc.server.models import Prepared, sampling_wire
from mfc.server.runners import RunnerError
from mfc.server.scheduler import Scheduler
from mfc.template import TemplateError


class PromptError(ValueError):
    """The prompt cannot be built (the template fails) or does not fit (token counts)."""


@dataclass(frozen=True)
class Piece:
    text: str
    # Ollama's api.Logprob objects, one per token of ``text``, when the request asked for them
    logprobs: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Done:
    stats: Mapping[str, Any]  # Stats fields, ns
    tokens: tuple[int, ...] = ()  # prompt + answer tokens (Ollama's context)
    load_ns: int = 0
    total_ns: int = 0
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Conversation:
    """What a chat or generate request asks the template to render."""

    messages: Sequence[Mapping[str, Any]]
    tools: Sequence[Mapping[str, Any]] | None = None
    think: bool | str | None = None
    template_override: str | None = None
    system_override: str | None = None
    image_messages: bool = True  # prepend the image's MESSAGE layers (chat does; generate not)
    extra: Mapping[str, Any] = field(default_factory=dict)


def build_prompt(image: ModelImage, conv: Conversation) -> str:
    """SYSTEM, the image's MESSAGE layers, then the request's messages, through the template."""
    template = choose_template(image, conv.template_override, "the request's `template`")
    suffix = conv.extra.get("suffix")
    if suffix and template.text is not None:
        return _insert(template, str(conv.messages[-1].get("content") or ""), str(suffix), conv)
    messages: list[Mapping[str, Any]] = []
    first_is_system = bool(conv.messages) and conv.messages[0].get("role") == "system"
    system = conv.system_override if conv.system_override is not None else image.system
    if system and not first_is_system:
        messages.append({"role": "system", "content": system})
    if conv.image_messages:
        messages.extend(m.to_dict() for m in image.messages)
    messages.extend(conv.messages)
    if template.text is None:
        return "".join(str(m.get("content") or "") for m in messages)
    return _render(template, messages, image, conv)


def _insert(template: PromptTemplate, prompt: str, suffix: str, conv: Conversation) -> str:
    from mfc.template import render_insert

    try:
        return render_insert(
            template.text or "",
            prompt=prompt,
            suffix=suffix,
            think=conv.think,
            origin=template.origin,
        )
    except TemplateError as exc:
        raise PromptError(f"the template failed: {exc}") from None


def _render(
    template: PromptTemplate,
    messages: Sequence[Mapping[str, Any]],
    image: ModelImage,
    conv: Conversation,
) -> str:
    from mfc.template import render_prompt

    try:
        if conv.tools or conv.think is not None:
            return render_prompt(
                template.text or "",
                messages=messages,
                tools=conv.tools,
                think=conv.think,
                bos_token=image.gguf.bos_token,
                eos_token=image.gguf.eos_token,
                origin=template.origin,
            )
        plain = [ChatMessage(str(m.get("role", "")), str(m.get("content") or "")) for m in messages]
        simple = all(set(m) <= {"role", "content"} for m in messages)
        if simple:
            return render(template, plain, image=image)
        return render_prompt(
            template.text or "",
            messages=messages,
            bos_token=image.gguf.bos_token,
            eos_token=image.gguf.eos_token,
            origin=template.origin,
        )
    except TemplateError as exc:
        raise PromptError(f"the template of model {image.name} failed: {exc}") from None


async def generate(
    scheduler: Scheduler,
    name: str,
    prepared: Prepared,
    prompt: str | Sequence[int],
    *,
    keep_alive: float | None,
    grammar: str | None = None,
    logprobs: bool = False,
    top_logprobs: int = 0,
    info: Mapping[str, Any] | None = None,
) -> AsyncGenerator[Piece | Done, None]:
    """Stream one generation. Closing the iterator cancels it in the runner."""
    start = time.perf_counter_ns()
    async with scheduler.use(name, prepared.spec, keep_alive, dict(info or {})) as model:
        load_ns = 0 if model.load_reported else model.load_ns
        model.load_reported = True
        fields: dict[str, Any] = {"sampling": sampling_wire(prepared.sampling)}
        if isinstance(prompt, str):
            fields["prompt"] = prompt
        else:
            fields["tokens"] = list(prompt)
        if grammar is not None:
            fields["grammar"] = grammar  # GBNF (mfc.runtime.structured), compiled by the runner
        if logprobs or top_logprobs:
            fields["logprobs"] = True
            fields["top_logprobs"] = top_logprobs
        try:
            async with model.runner.request("generate", **fields) as frames:
                async for msg in frames:
                    kind = msg.get("t")
                    if kind == "text":
                        yield Piece(str(msg.get("text", "")), tuple(msg.get("logprobs") or ()))
                    elif kind == "done":
                        yield Done(
                            stats=dict(msg.get("stats") or {}),
                            tokens=tuple(msg.get("tokens") or ()),
                            load_ns=load_ns,
                            total_ns=time.perf_counter_ns() - start,
                            warnings=tuple(msg.get("warnings") or ()),
                        )
                        return
        except RunnerError as exc:
            if exc.kind == "prompt_too_long":
                n_tokens = exc.detail.get("n_tokens")
                n_ctx = exc.detail.get("n_ctx")
                raise PromptError(
                    f"the prompt is {n_tokens} tokens but the context window (num_ctx) is "
                    f"{n_ctx}: shorten it or set a larger num_ctx in options"
                ) from None
            raise


async def embed(
    scheduler: Scheduler,
    name: str,
    prepared: Prepared,
    inputs: Sequence[str],
    *,
    truncate: bool,
    keep_alive: float | None,
    info: Mapping[str, Any] | None = None,
) -> tuple[list[list[float]], int, int]:
    """Vectors for ``inputs``, the prompt token count, and the load time (ns)."""
    async with scheduler.use(name, prepared.spec, keep_alive, dict(info or {})) as model:
        load_ns = 0 if model.load_reported else model.load_ns
        model.load_reported = True
        try:
            value = await model.runner.call("embed", inputs=list(inputs), truncate=truncate)
        except RunnerError as exc:
            if exc.kind == "prompt_too_long":
                raise PromptError("the input length exceeds the context length") from None
            raise
    return list(value["embeddings"]), int(value.get("prompt_eval_count", 0)), load_ns
