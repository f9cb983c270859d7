"""The exact text a model sees for a conversation.

The template is chosen in Ollama's order, extended by the GGUF's own template:
the image's TEMPLATE layer (Go or Jinja2; a REPL `/set template` replaces it) →
the GGUF's `tokenizer.chat_template` → a built-in template for the model family,
if its special tokens are in the model's vocabulary → the raw prompt. SYSTEM
comes first, then the MESSAGE layers, then the conversation so far, then the
user's new turn. All rendering is done by
`mfc.template` in Jinja2's sandbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mfc.runtime.model import ChatMessage, ModelImage


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    kind: str  # "template" | "gguf" | "builtin" | "raw"
    text: str | None  # None for raw
    origin: str  # named in render errors and by `/show template`


def choose_template(
    image: ModelImage,
    override: str | None = None,
    override_origin: str = "template set with `/set template`",
) -> PromptTemplate:
    if override is not None:
        return PromptTemplate("template", override, override_origin)
    if image.template:
        return PromptTemplate("template", image.template, f"TEMPLATE of model `{image.name}`")
    if image.gguf.chat_template:
        return PromptTemplate(
            "gguf", image.gguf.chat_template, f"chat_template in {image.model_path}"
        )
    family = image.family
    if family:
        from mfc.runtime.vocab import has_tokens
        from mfc.template import builtin_markers, builtin_template

        text = builtin_template(family)
        if text:
            markers = builtin_markers(family)
            if image.model_path is not None and has_tokens(image.model_path, markers):
                return PromptTemplate("builtin", text, f"built-in template for `{family}`")
            # llama2, TinyLlama, base models: `llama` architecture, no llama3 tokens.
            # Ollama prompts such models raw; their markers would be plain text.
            return PromptTemplate(
                "raw",
                None,
                f"raw prompt (no template; the built-in template for `{family}` needs "
                f"{', '.join(markers)} in the vocabulary)",
            )
    return PromptTemplate("raw", None, "raw prompt (no template)")


def conversation(
    image: ModelImage,
    history: Sequence[ChatMessage],
    prompt: str | None,
    *,
    system: str | None = None,
) -> list[ChatMessage]:
    """SYSTEM, then MESSAGE layers, then earlier turns, then the new user turn."""
    out: list[ChatMessage] = []
    system_text = system if system is not None else image.system
    if system_text:
        out.append(ChatMessage("system", system_text))
    out.extend(image.messages)
    out.extend(history)
    if prompt is not None:
        out.append(ChatMessage("user", prompt))
    return out


def render(
    template: PromptTemplate,
    messages: Sequence[ChatMessage],
    *,
    image: ModelImage,
    add_generation_prompt: bool = True,
    think: bool | str | None = None,
) -> str:
    """Render `messages` with `template`; raises `mfc.template` errors naming the origin.

    The raw fallback concatenates every message's content in order with nothing
    between them (a completion model continues exactly what it was given).
    """
    if template.text is None:
        return "".join(m.content for m in messages)
    from mfc.template import render_prompt

    systems = [m.content for m in messages if m.role == "system"]
    return render_prompt(
        template.text,
        messages=[m.to_dict() for m in messages],
        system=systems[0] if systems else None,
        add_generation_prompt=add_generation_prompt,
        think=think,
        bos_token=image.gguf.bos_token,
        eos_token=image.gguf.eos_token,
        origin=template.origin,
    )
