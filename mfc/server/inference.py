"""One generation or embedding request, from a prepared model to a stream of events.

Dialect-free: the Ollama, OpenAI and Anthropic handlers all call these and
only differ in how they spell the events. The prompt is rendered here, in the
server process (templates are Python, in a sandbox); tokenizing, decoding and
sampling happen in the model's runner.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mfc.runtime import media
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
    """What a chat or generate request asks the template to render.

    A message may carry ``images``: the encoded bytes of each image (checked already), which
    become `media.MEDIA_MARKER` slots in its content (see `build_prompt`).
    """

    messages: Sequence[Mapping[str, Any]]
    tools: Sequence[Mapping[str, Any]] | None = None
    think: bool | str | None = None
    template_override: str | None = None
    system_override: str | None = None
    image_messages: bool = True  # prepend the image's MESSAGE layers (chat does; generate not)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt and the images its `media.MEDIA_MARKER` slots stand for, in order
    (``text`` holds the marker exactly ``len(images)`` times)."""

    text: str
    images: tuple[bytes, ...] = ()

    def debug_text(self) -> str:
        """The prompt as ``_debug_render_only`` shows it: each slot as Ollama's ``[img-N]``."""
        parts = self.text.split(media.MEDIA_MARKER)
        out = [parts[0]]
        for n, part in enumerate(parts[1:]):
            out.append(f"[img-{n}]{part}")
        return "".join(out)


class _Slots:
    """Where each image goes, found after the template has run.

    Each image becomes a placeholder no client can type (it carries a random nonce), placed
    where Ollama puts its ``[img-N]`` tags: replacing the first ``[img]`` of the message's
    content, else prefixed to it. After rendering, every `media.MEDIA_MARKER` already in the
    text (typed by a user, or in a system prompt or template) is removed and each placeholder
    becomes the marker; the images are listed in the order their slots appear, so an image
    the template did not render is not sent, and the count always matches.
    """

    def __init__(self) -> None:
        self.nonce = secrets.token_hex(8)
        self.images: list[bytes] = []
        self.pattern = re.compile(r"\[mfc-img-" + self.nonce + r"-(\d+)\]")

    def tag(self, message: Mapping[str, Any]) -> Mapping[str, Any]:
        images = message.get("images")
        if "images" not in message:
            return message
        out = {k: v for k, v in message.items() if k != "images"}
        if not images:
            return out
        content = str(out.get("content") or "")
        prefix = ""
        for data in images:
            slot = f"[mfc-img-{self.nonce}-{len(self.images)}]"
            self.images.append(bytes(data))
            if "[img]" in content:
                content = content.replace("[img]", slot, 1)
            else:
                prefix += slot
        out["content"] = prefix + content
        return out

    def resolve(self, text: str) -> Prompt:
        text = media.strip_markers(text)
        used: list[bytes] = []

        def slot(m: re.Match[str]) -> str:
            used.append(self.images[int(m.group(1))])
            return media.MEDIA_MARKER

        return Prompt(self.pattern.sub(slot, text), tuple(used))


def build_prompt(image: ModelImage, conv: Conversation) -> Prompt:
    """SYSTEM, the image's MESSAGE layers, then the request's messages, through the template;
    the messages' images become `media.MEDIA_MARKER` slots (`_Slots`)."""
    slots = _Slots()
    tagged = [slots.tag(m) for m in conv.messages]
    return slots.resolve(_build_text(image, conv, tagged))


def _build_text(
    image: ModelImage, conv: Conversation, conv_messages: Sequence[Mapping[str, Any]]
) -> str:
    template = choose_template(image, conv.template_override, "the request's `template`")
    suffix = conv.extra.get("suffix")
    if suffix and template.text is not None:
        return _insert(template, str(conv_messages[-1].get("content") or ""), str(suffix), conv)
    messages: list[Mapping[str, Any]] = []
    first_is_system = bool(conv_messages) and conv_messages[0].get("role") == "system"
    system = conv.system_override if conv.system_override is not None else image.system
    if system and not first_is_system:
        messages.append({"role": "system", "content": system})
    if conv.image_messages:
        messages.extend(m.to_dict() for m in image.messages)
    messages.extend(conv_messages)
    if template.text is None:
        return "".join(str(m.get("content") or "") for m in messages)
    return _render(template, messages, image, conv)


_RAW_TAG = re.compile(r"\[img-(\d+)\]")


def raw_prompt(text: str, images: Sequence[bytes] = ()) -> Prompt:
    """A raw prompt (no template): as in Ollama, image N goes where the prompt says
    ``[img-N]`` (the first such tag); typed `media.MEDIA_MARKER` text is removed.

    PromptError names an image the prompt has no tag for (Ollama's runner would fail on it).
    """
    text = media.strip_markers(text)
    if not images:
        return Prompt(text)
    placed: set[int] = set()
    order: list[bytes] = []

    def slot(m: re.Match[str]) -> str:
        n = int(m.group(1))
        if n >= len(images) or n in placed:
            return m.group(0)
        placed.add(n)
        order.append(bytes(images[n]))
        return media.MEDIA_MARKER

    out = _RAW_TAG.sub(slot, text)
    missing = [n for n in range(len(images)) if n not in placed]
    if missing:
        n = missing[0]
        raise PromptError(
            f'images[{n}]: a raw prompt places each image with its tag: put "[img-{n}]" '
            "in the prompt where the image goes"
        )
    return Prompt(out, tuple(order))


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
    images: Sequence[bytes] = (),
) -> AsyncGenerator[Piece | Done, None]:
    """Stream one generation. Closing the iterator cancels it in the runner.

    ``images`` are the encoded images a text ``prompt``'s `media.MEDIA_MARKER` slots stand
    for, in order (the frame carries them as standard base64)."""
    if images and not isinstance(prompt, str):
        raise ValueError("images need a text prompt (a token prompt has no image slots)")
    start = time.perf_counter_ns()
    async with scheduler.use(name, prepared.spec, keep_alive, dict(info or {})) as model:
        load_ns = 0 if model.load_reported else model.load_ns
        model.load_reported = True
        fields: dict[str, Any] = {"sampling": sampling_wire(prepared.sampling)}
        if isinstance(prompt, str):
            fields["prompt"] = prompt
        else:
            fields["tokens"] = list(prompt)
        if images:
            fields["images"] = [base64.b64encode(data).decode("ascii") for data in images]
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
