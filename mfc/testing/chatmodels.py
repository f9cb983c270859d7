"""The `tools` and `think` fixture models: the counter's construction plus whole-string tokens.

Tool calling and thinking are proven end to end on real llama.cpp with models
whose greedy output is a tool call, or a thought then an answer, in a known
format. They are built exactly like the counter (`mfc.testing.counter`): a
bigram model, class embeddings from a 128×128 Hadamard matrix, zero attention
and FFN, so the next token depends on the last token only. On top of the
counter's 354 tokens each model adds a few multi-character tokens of type
USER_DEFINED (gguf ``TokenType`` 4). llama.cpp splits those out of any text
(without ``parse_special``) and prints them back as their text, so a whole
markup tag, or a whole JSON call, is one token with a class (one of the 32
classes the counter leaves free) and a successor of its own:

- ``tools.gguf``: ``<|assistant|>`` → ``<tool_call>`` → the call
  ``{"name": "get_weather", "arguments": {"city": "Paris"}}`` → ``</tool_call>``
  → EOS, and ``</tool_response>`` → ``It is sunny in Paris.`` → EOS. Its
  template opens the assistant turn at the end of a user turn and opens none
  after a tool result, so the first turn calls the tool and the second one,
  which ends with the tool result, answers from it.
- ``think.gguf``: ``<|assistant|>`` → ``<think>`` → ``I should count up.`` →
  ``</think>`` → ``a``, then the counter's ``bcd…z`` → EOS. With ``think``
  false its template prefills ``<think></think>`` (as Qwen3 does), so the
  prompt ends with ``</think>`` and the answer is ``abc…z`` with no thought.

Printable characters keep the counter's rule; every other added token (and the
control and byte tokens) is followed by EOS. Each model ships its template
twice: as Go text (`TOOLS_TEMPLATE`, `THINK_TEMPLATE`, for a Modelfile's
TEMPLATE) and as the GGUF's Jinja ``tokenizer.chat_template``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

import numpy as np

from mfc.testing import counter

USER_DEFINED = 4  # gguf.TokenType.USER_DEFINED

TOOL_CALL_BODY = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
TOOL_ANSWER = "It is sunny in Paris."
THOUGHT = "I should count up."
THINK_ANSWER = "abcdefghijklmnopqrstuvwxyz"

TOOLS_TEMPLATE = """\
{{- if .Tools }}<|system|>Tools: {{ .Tools }}<|end|>{{ end }}
{{- range .Messages }}
{{- if eq .Role "system" }}<|system|>{{ .Content }}<|end|>
{{- else if eq .Role "user" }}<|user|>{{ .Content }}<|end|><|assistant|>
{{- else if eq .Role "assistant" }}
{{- if .ToolCalls }}<tool_call>
{{- range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
{{- end }}</tool_call>
{{- else }}{{ .Content }}{{ end }}<|end|>
{{- else if eq .Role "tool" }}<tool_response>{{ .Content }}</tool_response>
{{- end }}
{{- end }}"""
"""The tools fixture's Go template: a user turn ends with ``<|assistant|>`` (the model
answers), a tool result ends with ``</tool_response>`` (the model answers from it)."""

TOOLS_CHAT_TEMPLATE = """\
{%- if tools %}<|system|>Tools: {{ tools | tojson }}<|end|>{% endif %}
{%- for message in messages %}
{%- if message['role'] == 'system' %}<|system|>{{ message['content'] }}<|end|>
{%- elif message['role'] == 'user' %}<|user|>{{ message['content'] }}<|end|><|assistant|>
{%- elif message['role'] == 'assistant' %}
{%- if message.tool_calls %}<tool_call>
{%- for call in message.tool_calls %}{"name": "{{ call.function.name }}", \
"arguments": {{ call.function.arguments | tojson }}}{% endfor -%}
</tool_call>
{%- else %}{{ message['content'] }}{% endif %}<|end|>
{%- elif message['role'] == 'tool' %}<tool_response>{{ message['content'] }}</tool_response>
{%- endif %}
{%- endfor %}"""
"""The same template in Jinja (the GGUF's ``tokenizer.chat_template``)."""

THINK_TEMPLATE = """\
{{- range .Messages }}
{{- if eq .Role "system" }}<|system|>{{ .Content }}<|end|>
{{- else if eq .Role "user" }}<|user|>{{ .Content }}<|end|>
{{- else if eq .Role "assistant" }}<|assistant|>
{{- if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}{{ .Content }}<|end|>
{{- end }}
{{- end }}<|assistant|>
{{- if and .IsThinkSet (not .Think) }}<think></think>{{ end }}"""
"""The think fixture's Go template: ``.Thinking`` between ``<think>`` tags (so Ollama's
tag inference finds them); with think false the answer starts after an empty thought."""

THINK_CHAT_TEMPLATE = """\
{%- for message in messages %}
{%- if message['role'] == 'system' %}<|system|>{{ message['content'] }}<|end|>
{%- elif message['role'] == 'user' %}<|user|>{{ message['content'] }}<|end|>
{%- elif message['role'] == 'assistant' %}<|assistant|>
{%- if message.thinking %}<think>{{ message.thinking }}</think>{% endif %}\
{{ message['content'] }}<|end|>
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|assistant|>
{%- if enable_thinking is defined and not enable_thinking %}<think></think>{% endif %}
{%- endif %}"""
"""The same template in Jinja, with Qwen3's ``enable_thinking`` switch."""


@dataclass(frozen=True, eq=False)  # compared and cached by identity: one object per design
class ChatModel:
    """A counter with extra whole-string tokens, each with its own successor."""

    name: str
    extras: tuple[str, ...]
    successors: Mapping[str, str]  # added token → the next token's text (absent: EOS)
    go_template: str
    chat_template: str
    description: str


TOOLS = ChatModel(
    name="tools",
    extras=(
        "<|system|>",
        "<|user|>",
        "<|assistant|>",
        "<|end|>",
        "<tool_call>",
        TOOL_CALL_BODY,
        "</tool_call>",
        "<tool_response>",
        "</tool_response>",
        TOOL_ANSWER,
    ),
    successors={
        "<|assistant|>": "<tool_call>",
        "<tool_call>": TOOL_CALL_BODY,
        TOOL_CALL_BODY: "</tool_call>",
        "</tool_response>": TOOL_ANSWER,
    },
    go_template=TOOLS_TEMPLATE,
    chat_template=TOOLS_CHAT_TEMPLATE,
    description="mfc test fixture: calls get_weather for Paris, then answers from the result",
)

THINK = ChatModel(
    name="think",
    extras=("<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<think>", THOUGHT, "</think>"),
    successors={
        "<|assistant|>": "<think>",
        "<think>": THOUGHT,
        THOUGHT: "</think>",
        "</think>": "a",
    },
    go_template=THINK_TEMPLATE,
    chat_template=THINK_CHAT_TEMPLATE,
    description="mfc test fixture: thinks 'I should count up.', then answers abc...z",
)

MODELS = {"tools.gguf": TOOLS, "think.gguf": THINK}
"""Fixture file name → design."""

_N_BASE = counter.n_vocab()
_N_BASE_CLASSES = 1 + len(counter.PRINTABLE)  # the sink and the printable characters


@dataclass(frozen=True)
class _Vocab:
    tokens: tuple[str, ...]
    types: tuple[int, ...]
    scores: tuple[float, ...]


@cache
def vocab(model: ChatModel) -> _Vocab:
    """The counter's vocabulary, then ``model.extras`` as USER_DEFINED tokens."""
    base = counter.vocab()
    n = len(model.extras)
    if _N_BASE_CLASSES + n > counter.N_EMBD:
        raise ValueError(f"{model.name}: {n} added tokens do not fit in the free classes")
    return _Vocab(
        base.tokens + model.extras,
        base.types + (USER_DEFINED,) * n,
        base.scores + (0.0,) * n,
    )


def token_id(model: ChatModel, text: str) -> int:
    """Id of a printable character or an added token."""
    if text in model.extras:
        return _N_BASE + model.extras.index(text)
    return counter.char_token(text)


def _class_of(token: int) -> int:
    if token >= _N_BASE:
        return _N_BASE_CLASSES + token - _N_BASE
    return 0 if token < counter.char_token(" ") else 1 + token - counter.char_token(" ")


def _key(cls: int) -> np.ndarray:
    h = np.ones((1, 1), dtype=np.float32)
    while h.shape[0] < counter.N_EMBD:
        h = np.block([[h, h], [h, -h]])
    return h[cls]


@cache
def token_embd(model: ChatModel) -> np.ndarray:
    """``token_embd.weight`` (n_vocab, n_embd): each token's class row of the Hadamard matrix."""
    n = len(vocab(model).tokens)
    return np.stack([_key(_class_of(t)) for t in range(n)]).astype(np.float32)


def next_token(model: ChatModel, token: int) -> int:
    """The designed successor of ``token`` (EOS for the sink and unlisted added tokens)."""
    if token >= _N_BASE:
        nxt = model.successors.get(model.extras[token - _N_BASE])
        return counter.EOS if nxt is None else token_id(model, nxt)
    if token < counter.char_token(" "):
        return counter.EOS
    nxt_char = counter.base_next(counter.piece_text(token))
    return counter.EOS if nxt_char is None else counter.char_token(nxt_char)


@cache
def output_weight(model: ChatModel) -> np.ndarray:
    """``output.weight`` (n_vocab, n_embd): each class scores its successor (counter's margin)."""
    n = len(vocab(model).tokens)
    out = np.zeros((n, counter.N_EMBD), dtype=np.float32)
    seen: set[int] = set()
    for token in range(n):
        cls = _class_of(token)
        if cls in seen:
            continue
        seen.add(cls)
        out[next_token(model, token)] += counter.BASE_MARGIN * _key(cls) / counter.N_EMBD
    return out


def tokenize(model: ChatModel, text: str) -> list[int]:
    """As llama.cpp does: added tokens split out first (longest first), then the counter's rule."""
    ids: list[int] = []
    i = 0
    by_length = sorted(model.extras, key=len, reverse=True)
    plain = ""
    while i < len(text):
        match = next((e for e in by_length if text.startswith(e, i)), None)
        if match is None:
            plain += text[i]
            i += 1
            continue
        ids += [*counter.tokenize(plain), token_id(model, match)]
        plain = ""
        i += len(match)
    return ids + counter.tokenize(plain)


def piece(model: ChatModel, token: int) -> str:
    if token >= _N_BASE:
        return model.extras[token - _N_BASE]
    return counter.piece_text(token)


def expected_reply(model: ChatModel, prompt: str, max_tokens: int = 128) -> str:
    """What greedy decoding prints after ``prompt`` (BOS first, as llama.cpp tokenizes it)."""
    last = [counter.BOS, *tokenize(model, prompt)][-1]
    out: list[str] = []
    for _ in range(max_tokens):
        last = next_token(model, last)
        if last == counter.EOS:
            break
        out.append(piece(model, last))
    return "".join(out)
