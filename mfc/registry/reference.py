"""Pull/push references: ``[host[:port]/][namespace/]model[:tag][@sha256:…]``.

Built on the store's name grammar (``mfc.store.names``), so a reference is a store name plus
an optional digest: the parts that become URL path components are the same parts that become
store path components, and the grammar already refuses ``..``, absolute paths, ``/`` or NUL
inside a part. Ollama's defaults apply (``registry.ollama.ai``, ``library``, ``latest``), and
like Ollama a private registry's model needs both host and namespace
(``127.0.0.1:5000/library/tiny:1``): in ``127.0.0.1:5000/tiny`` the host would be read as a
namespace, which the error points out.

The repository path sent to the registry is ``namespace/model`` lower-cased: the OCI
distribution spec only allows lower-case repository names, while Ollama's names match
case-insensitively anyway. The store keeps the name as written
(``manifests/<host>/<namespace>/<model>/<tag>``).
"""

from __future__ import annotations

from dataclasses import dataclass

from mfc.store.names import InvalidNameError, ModelName, parse_ref


@dataclass(frozen=True, slots=True)
class Reference:
    """A model in a registry: ``name`` (host, namespace, model, tag) and maybe a digest."""

    name: ModelName
    digest: str | None = None

    @property
    def host(self) -> str:
        return self.name.host

    @property
    def repository(self) -> str:
        """``namespace/model`` as the registry's URLs spell it (lower case)."""
        return f"{self.name.namespace}/{self.name.model}".lower()

    @property
    def reference(self) -> str:
        """What the manifest URL ends with: the digest when pinned, else the tag."""
        return self.digest or self.name.tag

    def __str__(self) -> str:
        text = f"{self.name.host}/{self.name.namespace}/{self.name.model}:{self.name.tag}"
        return f"{text}@{self.digest}" if self.digest else text


def parse_reference(text: str) -> Reference:
    """Parse a pull/push reference; InvalidNameError (a ValueError) says which part and why."""
    if isinstance(text, str) and "://" in text:
        raise InvalidNameError(
            f"invalid model name `{text}`",
            "give the registry as `host[:port]/namespace/model:tag`, without a scheme"
            " (plain http is used for --insecure and loopback hosts)",
        )
    try:
        name, digest = parse_ref(text)
    except InvalidNameError as exc:
        first = text.split("/", 1)[0] if isinstance(text, str) else ""
        if text.count("/") == 1 and (":" in first or "." in first):
            raise InvalidNameError(
                exc.what,
                f"{exc.why}; a registry's model needs a namespace too:"
                f" `{first}/library/{text.split('/', 1)[1]}`",
            ) from None
        raise
    if name is None:
        raise InvalidNameError(
            f"invalid model reference `{text}`", "a digest alone does not say which registry"
        )
    return Reference(name, digest)
