"""Model names, with Ollama's grammar and defaults; no I/O.

A name is ``[host/][namespace/]model[:tag]``; missing parts default to
``registry.ollama.ai``, ``library`` and ``latest``. Per part (as Ollama's
``types/model/name.go``):

- host: 1–350 chars, first a letter/digit/``_``, then also ``-_.:``
- namespace: 1–80 chars, first a letter/digit/``_``, then also ``-_``
- model, tag: 1–80 chars, first a letter/digit/``_``, then also ``-_.``

Each part becomes one path component under ``manifests/``, so the grammar is
also the security boundary: no part can be empty, ``.``, ``..``, or contain
``/``, ``\\`` or NUL, and therefore no valid name addresses a path outside the
store. Names compare case-insensitively (``key``), but keep the case they were
written in for display.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mfc.digest import normalize

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

_MAX_LEN = {"host": 350, "namespace": 80, "model": 80, "tag": 80}
_REST = {"host": "-_.:", "namespace": "-_", "model": "-_.", "tag": "-_."}
_PART_RE = {
    kind: re.compile(r"[A-Za-z0-9_][A-Za-z0-9" + re.escape(rest) + r"]*\Z")
    for kind, rest in _REST.items()
}


class InvalidNameError(ValueError):
    """A model name that breaks the grammar: ``what`` names the text
    (``invalid model name `x```), ``why`` says which part is wrong and how."""

    def __init__(self, what: str, why: str):
        super().__init__(f"{what}: {why}")
        self.what = what
        self.why = why


@dataclass(frozen=True, slots=True)
class ModelName:
    host: str
    namespace: str
    model: str
    tag: str

    def __str__(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    @property
    def display(self) -> str:
        """Shortest form that parses back to this name (Ollama's DisplayShortest)."""
        if self.host.lower() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    @property
    def manifest_parts(self) -> tuple[str, str, str, str]:
        """Path components of the manifest file under ``manifests/``."""
        return (self.host, self.namespace, self.model, self.tag)

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What two names must share to be the same model (case-insensitive)."""
        return (self.host.lower(), self.namespace.lower(), self.model.lower(), self.tag.lower())

    def matches(self, other: ModelName) -> bool:
        return self.key == other.key


def _check_part(text: str, kind: str, value: str) -> None:
    if not value:
        raise InvalidNameError(f"invalid model name `{text}`", f"the {kind} is empty")
    if len(value) > _MAX_LEN[kind]:
        raise InvalidNameError(
            f"invalid model name `{text}`",
            f"the {kind} is {len(value)} characters long (at most {_MAX_LEN[kind]})",
        )
    if not _PART_RE[kind].match(value):
        allowed = " ".join(f"`{c}`" for c in _REST[kind])
        raise InvalidNameError(
            f"invalid model name `{text}`",
            f"the {kind} `{value}` must start with a letter,"
            f" digit or `_` and contain only letters, digits and {allowed}",
        )


def parse_name(text: str) -> ModelName:
    """Parse ``[host/][namespace/]model[:tag]``, filling Ollama's defaults.

    Raises InvalidNameError for anything else, including digests (see
    ``parse_ref``), absolute paths and path tricks.
    """
    if not isinstance(text, str) or not text:
        raise InvalidNameError("invalid model name", "the name is empty")
    if "\x00" in text or "\\" in text or any(c.isspace() for c in text):
        raise InvalidNameError(
            f"invalid model name {text!r}", "names cannot contain NUL, `\\` or whitespace"
        )
    if "@" in text:
        raise InvalidNameError(
            f"invalid model name `{text}`", "`@` is only allowed as `name@sha256:<hex>` in FROM"
        )
    if text.startswith("/"):
        raise InvalidNameError(
            f"invalid model name `{text}`",
            "a name cannot be an absolute path (to use a file, give it as a path in FROM)",
        )
    rest, tag = text, DEFAULT_TAG
    if rest.rfind(":") > rest.rfind("/"):
        rest, _, tag = rest.rpartition(":")
        _check_part(text, "tag", tag)
    parts = rest.split("/")
    if len(parts) > 3:
        raise InvalidNameError(
            f"invalid model name `{text}`",
            f"expected `[host/][namespace/]model[:tag]`, found {len(parts)} `/`-separated parts",
        )
    host, namespace = DEFAULT_HOST, DEFAULT_NAMESPACE
    if len(parts) == 3:
        host, namespace, model = parts
        _check_part(text, "host", host)
    elif len(parts) == 2:
        namespace, model = parts
    else:
        (model,) = parts
    _check_part(text, "namespace", namespace)
    _check_part(text, "model", model)
    return ModelName(host, namespace, model, tag)


def parse_ref(text: str) -> tuple[ModelName | None, str | None]:
    """Parse ``name``, ``name@sha256:<hex>`` or ``@sha256:<hex>``.

    Returns (name or None, digest ``sha256:<hex>`` or None).
    """
    if "@" not in text:
        return parse_name(text), None
    name_text, _, digest_text = text.rpartition("@")
    digest = normalize(digest_text)
    if digest is None:
        raise InvalidNameError(
            f"invalid model reference `{text}`",
            "after `@` expected `sha256:` and 64 lowercase hex digits",
        )
    return (parse_name(name_text) if name_text else None), digest
