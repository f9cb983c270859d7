"""Images a vision model is given: checked, decoded with limits, and marked in the prompt.

Every entry point (the CLI's image paths, `/api/*` ``images``, OpenAI ``image_url`` data URLs,
Anthropic ``image`` blocks) hands the engine the image's encoded bytes; nothing else decodes
images. Pillow reads the header first, so a decompression bomb (a few KB that claim a
60000×60000 canvas) is refused from its declared size before a pixel is allocated.

The prompt marks where each image goes with `MEDIA_MARKER`, one per image, in order: the
server and `mfc run` put it where Ollama puts its ``[img-N]`` tags (before the message's
text), and the engine asks libmtmd to split the prompt on exactly this marker. A marker the
user typed is not an image: `strip_markers` removes it from user text first.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

MEDIA_MARKER = "<__mfc_media__>"
"""Where an image's embeddings go in the rendered prompt (libmtmd's ``media_marker``)."""

MAX_IMAGE_BYTES = 32 * 1024 * 1024
"""Largest encoded image accepted (bytes)."""

MAX_PIXELS = 40_000_000
"""Largest decoded canvas accepted (width × height): 120 MB as RGB, a 48-megapixel photo fits."""

FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
"""What Pillow may decode; the first frame of an animated GIF or WebP is the image."""


class ImageError(ValueError):
    """An image that cannot be used: the message says what and how to fix it."""


@dataclass(frozen=True, slots=True)
class Bitmap:
    """A decoded image: RGB, 8 bits a channel, rows top to bottom (libmtmd's bitmap)."""

    width: int
    height: int
    rgb: bytes

    def __post_init__(self) -> None:
        if len(self.rgb) != self.width * self.height * 3:
            raise ValueError("rgb must hold width * height * 3 bytes")


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: str  # Pillow's name: "PNG", "JPEG", …
    width: int
    height: int


def _open(data: bytes) -> Any:  # a PIL.Image.Image (Pillow is imported lazily)
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageError("the image is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(
            f"the image is {len(data)} bytes; the limit is {MAX_IMAGE_BYTES} "
            f"({MAX_IMAGE_BYTES // (1024 * 1024)} MiB): send a smaller or more compressed image"
        )
    try:
        im = Image.open(io.BytesIO(data), formats=FORMATS)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ImageError(
            "the data is not an image mfc can read (PNG, JPEG, WebP, GIF or BMP)"
        ) from None
    except Image.DecompressionBombError:
        raise ImageError(_too_large_text(None, None)) from None
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageError("the image has no pixels")
    if width * height > MAX_PIXELS:
        raise ImageError(_too_large_text(width, height))
    return im


def _too_large_text(width: int | None, height: int | None) -> str:
    size = f" is {width}×{height} pixels;" if width else " is too large;"
    return (
        f"the image{size} the limit is {MAX_PIXELS} pixels (about "
        f"{MAX_PIXELS // 1_000_000} megapixels): scale it down"
    )


def check_image(data: bytes) -> ImageInfo:
    """Refuse what `decode_image` would refuse, decoding once (the server calls this before
    queueing a request, so a bad image is a 400, never a runner error)."""
    fmt, bitmap = _decode(data)
    return ImageInfo(fmt, bitmap.width, bitmap.height)


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header alone, with `check_image`'s byte and pixel limits (the
    engine counts an image's tokens from its size without decoding it)."""
    width, height = _open(data).size
    return int(width), int(height)


def decode_image(data: bytes) -> Bitmap:
    """The first frame of ``data`` as RGB; a transparent image is composited on white, as
    Ollama does, so transparent pixels do not read as black."""
    return _decode(data)[1]


def _decode(data: bytes) -> tuple[str, Bitmap]:
    from PIL import Image

    im = _open(data)
    fmt = str(im.format or "")
    try:
        im.load()
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            white.alpha_composite(rgba)
            rgb = white.convert("RGB")
        else:
            rgb = im.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"the {fmt or 'image'} data is damaged or truncated ({exc})") from None
    return fmt, Bitmap(rgb.width, rgb.height, rgb.tobytes())


def strip_markers(text: str) -> str:
    """User text with `MEDIA_MARKER` removed, so typed text can never claim an image slot."""
    return text.replace(MEDIA_MARKER, "")
