"""The design of the `counter` fixture model: vocabulary, constructed weights, adapters, reference.

The counter is a llama-architecture model whose greedy output is known in advance, so tests
elsewhere can prove end to end that a prompt reached llama.cpp, that an adapter was applied, and
that generation stops by itself. The construction:

- every token belongs to a *class*: each printable ASCII character is its own class, and all
  control and byte tokens share one ``sink`` class;
- each class gets one row of a 128×128 Sylvester–Hadamard matrix as its embedding (entries ±1, so
  RMSNorm leaves it unchanged and distinct classes are exactly orthogonal);
- attention and FFN weights are zero, so the residual stream at every position is the current
  token's embedding: the prediction depends on the last token only;
- the output row of token ``u`` is ``BASE_MARGIN / 128`` times the sum of the embeddings of the
  classes whose successor is ``u``, so the successor scores ``BASE_MARGIN`` and every other
  token scores 0.

Adapters are low-rank updates of ``output.weight`` (llama.cpp routes it through build_lora_mm),
built the same way with larger margins, so logits simply add up (see `reference_logits`).
This module is pure numpy; `mfc.testing.fixtures` writes these arrays as GGUF files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

import numpy as np

N_EMBD = 128
N_FF = 32
N_HEAD = 4
N_LAYER = 1
CONTEXT_LENGTH = 512
RMS_EPS = 1e-5

BASE_MARGIN = 10.0
"""Logit of the base successor; every other token scores 0."""
CONSTANT_MARGIN = 20.0
"""Logit `lora-constant` adds to `CONSTANT_CHAR` for every input (beats the base)."""
SHIFT_MARGIN = 40.0
"""Logit `lora-shift` adds to the character two places on (beats base and constant together).

The margins are 1:2:4, so every sum of a subset of them is distinct: no two candidates ever tie.
"""

CONSTANT_CHAR = "_"
SHIFT_LAST = "x"
"""`lora-shift` acts on ' '..'x' (so its target stays within ' '..'z'); silent elsewhere."""

UNK, BOS, EOS = 0, 1, 2
_CONTROL = ("<unk>", "<s>", "</s>")
_FIRST_BYTE = len(_CONTROL)
_FIRST_CHAR = _FIRST_BYTE + 256
SPACE_PIECE = "\u2581"
"""SentencePiece's visible space: the piece for ' '."""
PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))
EOS_AFTER = "z~"
"""Characters the base model ends generation after."""

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if not loop.first %}{{ '\\n' }}{% endif %}"
    "[{{ message['role'] }}]{{ message['content'] }}"
    "{% endfor %}"
)
"""Marks roles as ``[role]text`` lines, and opens no assistant header: with or without
add_generation_prompt the prompt ends with the last message's text, so the model continues it
(a chat turn "abc" is answered "def…z")."""


@dataclass(frozen=True)
class Vocab:
    """The llama (SentencePiece) vocabulary: control tokens, 256 byte tokens, printable chars."""

    tokens: tuple[str, ...]
    types: tuple[int, ...]
    scores: tuple[float, ...]


@cache
def vocab() -> Vocab:
    tokens = list(_CONTROL)
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    tokens += [SPACE_PIECE if c == " " else c for c in PRINTABLE]
    # gguf.TokenType: NORMAL=1, UNKNOWN=2, CONTROL=3, BYTE=6.
    types = [2, 3, 3] + [6] * 256 + [1] * len(PRINTABLE)
    # Single-character pieces never merge, so scores only order them.
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(len(PRINTABLE))]
    return Vocab(tuple(tokens), tuple(types), tuple(scores))


def n_vocab() -> int:
    return len(vocab().tokens)


def char_token(c: str) -> int:
    """Token id of a printable ASCII character."""
    return _FIRST_CHAR + PRINTABLE.index(c)


def byte_token(b: int) -> int:
    return _FIRST_BYTE + b


def tokenize(text: str) -> list[int]:
    """Tokenize as llama.cpp does for this vocabulary (no BOS, no space prefix).

    No two pieces merge, so each printable character is one token and anything else falls back
    to its UTF-8 byte tokens. A literal "▁" is a space, as in SentencePiece.
    """
    ids: list[int] = []
    for c in text.replace(SPACE_PIECE, " "):
        if c in PRINTABLE:
            ids.append(char_token(c))
        else:
            ids.extend(byte_token(b) for b in c.encode("utf-8"))
    return ids


def piece_text(token: int) -> str:
    """The text a generated token prints (only printable tokens are ever generated besides EOS)."""
    if token < _FIRST_CHAR:
        raise ValueError(f"token {token} is not a printable-character token")
    return PRINTABLE[token - _FIRST_CHAR]


# ---- the design, as rules -------------------------------------------------------------------


def base_next(c: str) -> str | None:
    """The base model's successor of a printable character (None = end of generation)."""
    return None if c in EOS_AFTER else chr(ord(c) + 1)


def shift_next(c: str) -> str | None:
    """`lora-shift`'s target for a character, or None where the adapter is silent."""
    return chr(ord(c) + 2) if " " <= c <= SHIFT_LAST else None


# ---- the design, as weights -----------------------------------------------------------------

_SINK_CLASS = 0


def _class_of(token: int) -> int:
    """Embedding class: 0 for control and byte tokens, 1 + index for printable characters."""
    return _SINK_CLASS if token < _FIRST_CHAR else 1 + token - _FIRST_CHAR


@cache
def _hadamard() -> np.ndarray:
    h = np.ones((1, 1), dtype=np.float32)
    while h.shape[0] < N_EMBD:
        h = np.block([[h, h], [h, -h]])
    return h


def _class_embedding(cls: int) -> np.ndarray:
    return _hadamard()[cls]


def _char_key(c: str) -> np.ndarray:
    """Unit "detector" of a character's class: dotted with its embedding it gives 1, others 0."""
    return _class_embedding(_class_of(char_token(c))) / N_EMBD


@cache
def token_embd() -> np.ndarray:
    """``token_embd.weight`` as numpy (n_vocab, n_embd)."""
    classes = [_class_of(t) for t in range(n_vocab())]
    return np.stack([_class_embedding(c) for c in classes]).astype(np.float32)


@cache
def output_weight() -> np.ndarray:
    """``output.weight`` as numpy (n_vocab, n_embd): each class scores its successor."""
    out = np.zeros((n_vocab(), N_EMBD), dtype=np.float32)
    out[EOS] += BASE_MARGIN * _class_embedding(_SINK_CLASS) / N_EMBD
    for c in PRINTABLE:
        nxt = base_next(c)
        target = EOS if nxt is None else char_token(nxt)
        out[target] += BASE_MARGIN * _char_key(c)
    return out


@dataclass(frozen=True)
class Lora:
    """A LoRA update of ``output.weight``: delta = (alpha / rank) * b @ a, numpy shapes."""

    a: np.ndarray  # (rank, n_embd)
    b: np.ndarray  # (n_vocab, rank)
    alpha: float

    @property
    def rank(self) -> int:
        return int(self.a.shape[0])

    def delta(self) -> np.ndarray:
        return (self.alpha / self.rank) * (self.b @ self.a)


@cache
def lora_constant() -> Lora:
    """Rank 1: every class (sink included) scores `CONSTANT_CHAR` with `CONSTANT_MARGIN`."""
    all_classes = _hadamard()[: 1 + len(PRINTABLE)].sum(axis=0) / N_EMBD
    a = all_classes[None, :].astype(np.float32)
    b = np.zeros((n_vocab(), 1), dtype=np.float32)
    b[char_token(CONSTANT_CHAR), 0] = CONSTANT_MARGIN
    return Lora(a=a, b=b, alpha=1.0)


@cache
def lora_shift() -> Lora:
    """One rank per character ' '..'x': it scores the character two on with `SHIFT_MARGIN`."""
    domain = [c for c in PRINTABLE if shift_next(c) is not None]
    a = np.stack([_char_key(c) for c in domain]).astype(np.float32)
    b = np.zeros((n_vocab(), len(domain)), dtype=np.float32)
    for i, c in enumerate(domain):
        b[char_token(shift_next(c) or ""), i] = SHIFT_MARGIN
    return Lora(a=a, b=b, alpha=float(len(domain)))


ADAPTERS = {"lora-constant.gguf": lora_constant, "lora-shift.gguf": lora_shift}
"""Adapter fixture name → its construction."""


# ---- reference decoding ---------------------------------------------------------------------


def reference_logits(token: int, adapters: Mapping[str, float] | None = None) -> np.ndarray:
    """Next-token logits after ``token``, computed as llama.cpp does for these weights."""
    x = token_embd()[token].astype(np.float64)
    h = x / np.sqrt(np.mean(x * x) + RMS_EPS)
    return _output_with(tuple(sorted((adapters or {}).items()))) @ h


@cache
def _output_with(adapters: tuple[tuple[str, float], ...]) -> np.ndarray:
    w = output_weight().astype(np.float64)
    for name, scale in adapters:
        w = w + scale * ADAPTERS[name]().delta()
    return w


def expected_continuation(
    text: str, adapters: Mapping[str, float] | None = None, max_tokens: int = 128
) -> str:
    """What greedy decoding prints after ``text`` (tokenized as llama.cpp does, BOS first).

    ``adapters`` maps adapter fixture names to scales, e.g. ``{"lora-shift.gguf": 1.0}``.
    Stops at EOS or after ``max_tokens`` tokens.
    """
    last = ([BOS, *tokenize(text)])[-1]
    out: list[str] = []
    for _ in range(max_tokens):
        last = int(np.argmax(reference_logits(last, adapters)))
        if last == EOS:
            break
        out.append(piece_text(last))
    return "".join(out)


@dataclass(frozen=True)
class Example:
    """A documented behaviour: greedy output for a prompt with adapters at given scales."""

    prompt: str
    output: str
    adapters: tuple[tuple[str, float], ...] = ()
    stops: bool = True
    """True: the model ends with EOS after ``output``; False: ``output`` is the first tokens."""


_SHIFT = (("lora-shift.gguf", 1.0),)
_CONST = (("lora-constant.gguf", 1.0),)
_BOTH = (*_CONST, *_SHIFT)
_TO_Z = "defghijklmnopqrstuvwxyz"
EXAMPLES: tuple[Example, ...] = (
    Example("abc", _TO_Z),
    Example("Z", "[\\]^_`abcdefghijklmnopqrstuvwxyz"),
    Example("5", "6789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz"),
    Example("x y ", "!\"#$%&'()*+,-./01234", stops=False),
    Example("{", "|}~"),
    Example("z", ""),
    Example("~", ""),
    Example("", ""),
    Example("café", ""),
    Example("abc", "egikmoqsuwyz", _SHIFT),
    Example("ab", "dfhjlnprtvxz", _SHIFT),
    Example("abc", _TO_Z, (("lora-shift.gguf", 0.0),)),
    Example("abc", "________", _CONST, stops=False),
    Example("", "________", _CONST, stops=False),
    Example("abc", _TO_Z, (("lora-constant.gguf", 0.4),)),
    Example("abc", "________", (("lora-constant.gguf", 0.6),), stops=False),
    Example("abc", "egikmoqsuwy_acegikmoqsuwy_aceg", _BOTH, stops=False),
    Example("", "_acegikmoqsuwy_acegikmoqsuwy_a", _BOTH, stops=False),
)
"""The behaviours docs/fixtures.md documents; tests check them in the reference and llama.cpp."""


def render_chat(messages: list[Mapping[str, str]], add_generation_prompt: bool = True) -> str:
    """Render `CHAT_TEMPLATE` the way HF/llama-cpp-python do (sandboxed Jinja2)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(CHAT_TEMPLATE).render(
        messages=messages,
        add_generation_prompt=add_generation_prompt,
        bos_token=_CONTROL[BOS],
        eos_token=_CONTROL[EOS],
    )
