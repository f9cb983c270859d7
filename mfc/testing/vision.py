"""The design of the `vision-proj` fixture: a tiny llava-style projector for the counter model.

libmtmd (llama.cpp's multimodal library) turns an image into embeddings that take the place of
tokens in the text model's input. This projector is built so that the counter
(`mfc.testing.counter`) reads a plain-coloured image as one letter: a red image is the letter
``r``, green is ``g``, blue is ``b``. The counter predicts from the last position only, so a
prompt that *ends* with a red image is continued ``stuvwxyz``, exactly as a prompt ending in
``r`` is. The construction, in libmtmd's ``mlp`` (LLaVA 1.5) graph:

- preprocessing: the image is resized to `IMAGE_SIZE` square and scaled to 0..1 (mean 0, std 1);
- ``v.patch_embd.weight``, a `PATCH_SIZE` convolution: vision feature 0, 1, 2 of each patch is
  the mean of its red, green, blue channel (feature 3 is 0); ``v.position_embd.weight`` is 0;
- one vision block (zero attention output and FFN), which llava's graph does not even run: it
  takes the features before the last block, here the patch embeddings themselves;
- ``mm.0`` (`GAIN` × identity) → GELU → ``mm.2``: column c of ``mm.2.weight`` is the counter's
  embedding of the letter of channel c, so every image token of a red image is
  GELU(4) ≈ 4.0 times the embedding of ``r``; the counter's final RMSNorm makes that ``r``.

So `IMAGE_TOKENS` tokens per image, all alike. Use square images: libmtmd pads others with
LLaVA's grey, which mixes other letters into the edge patches. A mixed colour is a mix of
letters (a tie for a pure mix: do not rely on it); black and white are no letter either.

Trap (libmtmd as llama-cpp-python 0.3.36 ships it): ``mtmd_helper_eval_chunks`` never asks
for logits on an image chunk, so a prompt that ends with an image has no logits to sample
from. Decode the last image chunk's embeddings yourself (``mtmd_encode_chunk`` +
``mtmd_get_output_embd``, then a batch of embeddings whose last entry has logits on), as
``tests/fixtures/test_vision_fixture.py`` does.

Variants (written by `mfc.testing.fixtures`): ``vision-proj-wide.gguf`` projects to
`WIDE_WIDTH` (64) instead of the counter's 128 — libmtmd loads it alone, and refuses it with the
counter ("mismatch between text model (n_embd = 128) and mmproj (n_embd = 64)");
``vision-proj-missing.gguf`` lacks `MISSING_TENSOR`, which libmtmd's loader treats as optional
but its graph uses: ``mtmd_init_from_file`` crashes the process (SIGSEGV) while building the
warm-up graph (with ``warmup`` off: at the first image's encode), so only ever load it in a
subprocess.

This module is pure numpy (and Pillow for `image_png`); `mfc.testing.fixtures` writes the GGUFs.
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np

from mfc.testing import counter

IMAGE_SIZE = 16
"""``clip.vision.image_size``: libmtmd resizes every image to this square."""
PATCH_SIZE = 8
"""``clip.vision.patch_size``: (16 / 8)² = 4 patches, so 4 image tokens."""
IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2
"""Embeddings (positions) one image takes in the text model's input."""
VISION_EMBD = 4
"""``clip.vision.embedding_length``: width of the vision features (R, G, B means, then a 0)."""
VISION_FF = 8
"""``clip.vision.feed_forward_length`` of the (unused) vision block."""
VISION_HEADS = 1
VISION_BLOCKS = 1
"""One block, loaded but not run: llava reads the features before the last block."""
MM_HIDDEN = 4
"""Width between ``mm.0`` and ``mm.2``."""
LAYER_NORM_EPS = 1e-6
GAIN = 4.0
"""``mm.0.weight`` = GAIN × identity: a full channel (1.0) gives GELU(4) ≈ 4.0."""
IMAGE_MEAN = (0.0, 0.0, 0.0)
IMAGE_STD = (1.0, 1.0, 1.0)
"""Normalisation: pixel / 255, then (x - mean) / std = x, so a channel is 0..1."""
PROJECTOR_TYPE = "mlp"

WIDE_WIDTH = 64
"""``vision-proj-wide.gguf`` projects to this width (the counter's is `counter.N_EMBD`, 128)."""
MISSING_TENSOR = "mm.0.weight"
"""The tensor ``vision-proj-missing.gguf`` lacks: optional to libmtmd's loader, but in its graph."""

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)

CHANNEL_LETTERS = ("r", "g", "b")
"""The letter each colour channel stands for: mm.2 maps channel c to this letter's embedding."""
COLOR_LETTERS = {RED: "r", GREEN: "g", BLUE: "b"}
"""What the counter reads a plain image of each colour as."""

RED_CONTINUATION = counter.expected_continuation("r")
"""Greedy output after a prompt ending with a red image: ``stuvwxyz``, EOS."""
GREEN_CONTINUATION = counter.expected_continuation("g")
"""Greedy output after a prompt ending with a green image: ``hijklmnopqrstuvwxyz``, EOS."""
BLUE_CONTINUATION = counter.expected_continuation("b")
"""Greedy output after a prompt ending with a blue image: ``cdefghijklmnopqrstuvwxyz``, EOS."""


def image_png(rgb: tuple[int, int, int], size: int | tuple[int, int] = IMAGE_SIZE) -> bytes:
    """A plain ``rgb`` image of ``size`` (square side or (width, height)) as PNG bytes.

    Deterministic (no timestamps): the same arguments always give the same bytes.
    """
    from PIL import Image

    width, height = (size, size) if isinstance(size, int) else size
    buf = io.BytesIO()
    Image.new("RGB", (width, height), tuple(rgb)).save(buf, format="PNG")
    return buf.getvalue()


# ---- the design, as keys and weights --------------------------------------------------------


def keys(width: int = counter.N_EMBD) -> dict[str, object]:
    """The ``clip.*`` metadata (besides ``general.*``), in the order they are written."""
    return {
        "clip.has_vision_encoder": True,
        "clip.projector_type": PROJECTOR_TYPE,
        "clip.vision.image_size": IMAGE_SIZE,
        "clip.vision.patch_size": PATCH_SIZE,
        "clip.vision.embedding_length": VISION_EMBD,
        "clip.vision.feed_forward_length": VISION_FF,
        "clip.vision.projection_dim": width,
        "clip.vision.block_count": VISION_BLOCKS,
        "clip.vision.attention.head_count": VISION_HEADS,
        "clip.vision.attention.layer_norm_epsilon": LAYER_NORM_EPS,
        "clip.vision.image_mean": list(IMAGE_MEAN),
        "clip.vision.image_std": list(IMAGE_STD),
    }


def _letter_embedding(c: str) -> np.ndarray:
    return counter.token_embd()[counter.char_token(c)]


def tensors(width: int = counter.N_EMBD) -> dict[str, np.ndarray]:
    """The projector's tensors as numpy arrays (numpy shapes: outermost dimension first).

    ``width`` is the projection's output width; for widths other than 128 the letter
    embeddings are cut (or tiled) to that width, which only matters for the wide variant.
    """
    patch = np.zeros((VISION_EMBD, 3, PATCH_SIZE, PATCH_SIZE), dtype=np.float32)
    for channel in range(3):
        patch[channel, channel] = 1.0 / (PATCH_SIZE * PATCH_SIZE)
    mm2 = np.zeros((width, MM_HIDDEN), dtype=np.float32)
    for channel, letter in enumerate(CHANNEL_LETTERS):
        mm2[:, channel] = np.resize(_letter_embedding(letter), width)
    return {
        "v.patch_embd.weight": patch,
        "v.position_embd.weight": np.zeros((IMAGE_TOKENS, VISION_EMBD), dtype=np.float32),
        "v.blk.0.attn_out.weight": np.zeros((VISION_EMBD, VISION_EMBD), dtype=np.float32),
        "v.blk.0.ffn_up.weight": np.zeros((VISION_FF, VISION_EMBD), dtype=np.float32),
        "v.blk.0.ffn_down.weight": np.zeros((VISION_EMBD, VISION_FF), dtype=np.float32),
        "mm.0.weight": (GAIN * np.eye(MM_HIDDEN, VISION_EMBD)).astype(np.float32),
        "mm.0.bias": np.zeros(MM_HIDDEN, dtype=np.float32),
        "mm.2.weight": mm2,
        "mm.2.bias": np.zeros(width, dtype=np.float32),
    }


# ---- reference ------------------------------------------------------------------------------


def _gelu(x: np.ndarray) -> np.ndarray:
    """ggml's GELU (the tanh approximation)."""
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def reference_embeddings(rgb: tuple[int, int, int], width: int = counter.N_EMBD) -> np.ndarray:
    """What libmtmd computes for a plain ``rgb`` image: (`IMAGE_TOKENS`, width) float64."""
    t = {k: v.astype(np.float64) for k, v in tensors(width).items()}
    x = (np.asarray(rgb, dtype=np.float64) / 255.0 - np.asarray(IMAGE_MEAN)) / np.asarray(IMAGE_STD)
    # A plain image: every patch is the same, the convolution sees x in every pixel.
    features = np.einsum("hcij,c->h", t["v.patch_embd.weight"], x)
    features = features[None, :] + t["v.position_embd.weight"]
    hidden = _gelu(features @ t["mm.0.weight"].T + t["mm.0.bias"])
    out: np.ndarray = hidden @ t["mm.2.weight"].T + t["mm.2.bias"]
    return out


@cache
def image_letter(rgb: tuple[int, int, int]) -> str | None:
    """The printable character whose class the counter reads a plain ``rgb`` image as.

    None when the image is no single letter (black: nothing; a mix: no class wins clearly).
    """
    last = reference_embeddings(rgb)[-1]
    norm = float(np.linalg.norm(last))
    if norm == 0.0:
        return None
    # Cosine between the embedding and each token's (every embedding has norm sqrt(N_EMBD)).
    cosines = counter.token_embd() @ last / (norm * np.sqrt(counter.N_EMBD))
    best = int(np.argmax(cosines))
    if cosines[best] < 0.99 or best < counter.char_token(" "):
        return None
    return counter.piece_text(best)


def expected_continuation_after(rgb: tuple[int, int, int]) -> str:
    """Greedy output after a prompt that ends with a plain ``rgb`` image."""
    letter = image_letter(rgb)
    if letter is None:
        raise ValueError(f"{rgb} is not one of the fixture's letters: use RED, GREEN or BLUE")
    return counter.expected_continuation(letter)
