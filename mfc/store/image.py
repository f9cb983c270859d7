"""One read model of a built image: the value `mfc show`, `mfc run`, `/save` and the server read.

``read_image(store, name)`` reads a manifest, its config blob and every text and
JSON layer once, into a frozen ``ImageView``; ``image_of_gguf(path)`` makes the
same value for a bare GGUF file (`mfc run ./m.gguf`). Facts about the weights
(architecture, parameter count, context length, quantization) come from the
config blob (what mfc or Ollama recorded at build time) and, where the config
does not say or the caller asks for it, from the model GGUF's header, read by
``mfc.gguf_meta`` (no tensor data, no vocabulary decoded).

The runtime's ``ModelImage`` is this class; it only re-points ``model_path`` at a
staged copy of a split model's shards (``mfc.runtime.model``). Rendering the view
back to a Modelfile and to `mfc show` text lives in ``mfc.store.show``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfc.diagnostics import codes
from mfc.diagnostics.diagnostic import DiagnosticError
from mfc.gguf_meta import (
    GGUFFormatError,
    GGUFInfo,
    inspect,
    merge_split,
    parameter_count_label,
    split_set,
)
from mfc.modelfile.spec import ParamValue
from mfc.store import media_types as mt
from mfc.store.manifest import Descriptor, Manifest
from mfc.store.names import ModelName
from mfc.store.store import Store, StoreError, adapter_scales, read_config

# Config keys Ollama (and the builder) use for REQUIRES / RENDERER / PARSER.
EXTRA_INSTRUCTIONS: tuple[tuple[str, str], ...] = (
    ("requires", "REQUIRES"),
    ("renderer", "RENDERER"),
    ("parser", "PARSER"),
)

# The one repair hint for an image whose blobs or layers cannot be read.
REPAIR_HINT = "`mfc verify` checks every blob; rebuild or re-load the damaged model"


class LayerError(StoreError):
    """A text or JSON layer of an image that cannot be read as what its media type says."""

    def __init__(self, digest: str, media_type: str, reason: str):
        super().__init__(f"layer {digest} ({media_type.rsplit('.', 1)[-1]}) {reason}")
        self.digest = digest
        self.media_type = media_type
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # system | user | assistant | tool
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class Adapter:
    """A LoRA adapter layer: its blob, the scale it is applied with, its digest and size."""

    path: Path
    scale: float = 1.0
    digest: str = ""
    size: int = 0


@dataclass(frozen=True)
class ImageView:
    """Everything a built image (or a bare GGUF) says about itself, read once.

    The first fields keep the order of the runtime's former ``ModelImage`` so
    ``ImageView("m", Path("m.gguf"), system=...)`` still reads naturally.
    """

    name: str  # as the user wrote it (or the file path for a bare GGUF)
    # The file llama.cpp opens: shard 1's blob. The runtime re-points it at shard 1
    # of a staged split set (``shards`` keeps the blobs). None: no model layer.
    model_path: Path | None = None
    gguf: GGUFInfo = field(default_factory=GGUFInfo)  # header facts, when they were read
    adapters: tuple[Adapter, ...] = ()
    template: str | None = None  # TEMPLATE layer (Go or Jinja2)
    system: str | None = None  # SYSTEM layer
    messages: tuple[ChatMessage, ...] = ()  # MESSAGE layers
    params: Mapping[str, ParamValue] = field(default_factory=dict)  # tuples for repeatables
    licenses: tuple[str, ...] = ()
    digest: str = ""  # manifest digest (the model ID); "" for a bare GGUF
    config: Mapping[str, Any] = field(default_factory=dict)
    ref: ModelName | None = None  # the stored name (its spelling in the store)
    manifest: Manifest | None = None
    shards: tuple[Path, ...] = ()  # every model GGUF (split models have several)
    projectors: tuple[Path, ...] = ()
    modified: float | None = None  # manifest mtime, seconds since the epoch

    # -- names and sizes ---------------------------------------------------------

    @property
    def display(self) -> str:
        """The short name, as `mfc list` prints it (``counter:latest``)."""
        return self.ref.display if self.ref is not None else self.name

    def weights(self) -> Path:
        """``model_path``, or NO_MODEL_LAYER for an image without weights (what an
        engine loads; a typed ``Path`` where ``model_path`` may be None)."""
        if self.model_path is None:
            raise codes.NO_MODEL_LAYER.error(
                f"model `{self.name}` has no model weights layer",
                hint="rebuild it from a Modelfile whose FROM names a GGUF file or model",
            )
        return self.model_path

    @property
    def size(self) -> int:
        """Bytes of every blob the image references (config included)."""
        return self.manifest.size if self.manifest is not None else 0

    # -- weights facts: config first, then the GGUF header ----------------------

    def _config_str(self, key: str) -> str | None:
        value = self.config.get(key)
        return value if isinstance(value, str) and value else None

    def _config_int(self, key: str) -> int | None:
        value = self.config.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def format(self) -> str:
        return self._config_str("model_format") or "gguf"

    @property
    def architecture(self) -> str | None:
        return self._config_str("model_family") or self.gguf.architecture

    family = architecture  # the runtime's older spelling

    @property
    def families(self) -> tuple[str, ...]:
        value = self.config.get("model_families")
        if isinstance(value, list) and all(isinstance(v, str) for v in value) and value:
            return tuple(value)
        return (self.architecture,) if self.architecture else ()

    @property
    def parameter_count(self) -> int | None:
        """Exact weight count from the GGUF header (None when it was not read)."""
        return self.gguf.parameter_count or None

    @property
    def parameter_size(self) -> str | None:
        """Ollama's label (`format.HumanNumber`): ``8.0B``, ``1.2B``, ``135M``."""
        recorded = self._config_str("model_type")
        if recorded:
            return recorded
        count = self.parameter_count
        return parameter_count_label(count) if count else None

    @property
    def context_length(self) -> int | None:
        return self._config_int("context_length") or self.gguf.context_length

    @property
    def embedding_length(self) -> int | None:
        return self._config_int("embedding_length") or self.gguf.embedding_length

    @property
    def quantization(self) -> str | None:
        """Ollama's file-type names: F32, F16, Q8_0, Q4_K_M, …"""
        return self._config_str("file_type") or self.gguf.file_type

    # -- instructions the config carries -------------------------------------------

    @property
    def requires(self) -> str | None:
        return self._config_str("requires")

    @property
    def renderer(self) -> str | None:
        return self._config_str("renderer")

    @property
    def parser(self) -> str | None:
        return self._config_str("parser")

    @property
    def build_args(self) -> Mapping[str, str]:
        meta = self.config.get("mfc")
        args = meta.get("build_args") if isinstance(meta, dict) else None
        if not isinstance(args, dict):
            return {}
        return {str(k): str(v) for k, v in args.items()}

    # -- what the API reports ---------------------------------------------------------

    def capabilities(self) -> tuple[str, ...]:
        """Ollama's capability words this image has, from its template and layers."""
        from mfc.template.features import template_supports_thinking, template_supports_tools

        # The same functions decide how answers are parsed (mfc.runtime.output), so a model
        # that says "tools" or "thinking" also gets its calls and thoughts split out.
        template = self.template if self.template is not None else self.gguf.chat_template or ""
        caps = ["completion"]
        if template_supports_tools(template):
            caps.append("tools")
        if ".Suffix" in template:
            caps.append("insert")
        if self.projectors:
            caps.append("vision")
        if template_supports_thinking(template):
            caps.append("thinking")
        return tuple(caps)

    def details(self) -> dict[str, Any]:
        """Ollama's ``details`` object (`api.ModelDetails`) of /api/tags and /api/show."""
        return {
            "parent_model": "",
            "format": self.format,
            "family": self.architecture or "",
            "families": list(self.families) or None,
            "parameter_size": self.parameter_size or "",
            "quantization_level": self.quantization or "",
        }

    def model_info(self) -> dict[str, Any]:
        """Ollama's ``model_info``: GGUF keys, as far as the view knows them."""
        arch = self.architecture
        info: dict[str, Any] = {}
        if arch:
            info["general.architecture"] = arch
        if self.parameter_count:
            info["general.parameter_count"] = self.parameter_count
        if self.gguf.file_type and self.gguf.architecture:
            info["general.file_type"] = self.gguf.file_type
        if arch and self.context_length is not None:
            info[f"{arch}.context_length"] = self.context_length
        if arch and self.embedding_length is not None:
            info[f"{arch}.embedding_length"] = self.embedding_length
        return info

    def to_json(self) -> dict[str, Any]:
        """`mfc show --json`: the image as mfc reads it."""
        return {
            "name": self.display,
            "id": self.digest,
            "size": self.size,
            "details": {
                "architecture": self.architecture,
                "parameters": self.parameter_size,
                "context_length": self.context_length,
                "embedding_length": self.embedding_length,
                "quantization": self.quantization,
            },
            "adapters": [
                {"digest": a.digest, "size": a.size, "scale": a.scale} for a in self.adapters
            ],
            "parameters": {
                k: list(v) if isinstance(v, tuple) else v for k, v in self.params.items()
            },
            "template": self.template,
            "system": self.system,
            "license": list(self.licenses),
            "messages": [m.to_dict() for m in self.messages],
            "manifest": self.manifest.to_json() if self.manifest is not None else None,
            "config": dict(self.config),
        }


# -- reading -------------------------------------------------------------------------


_INFO_CACHE: dict[tuple[str, int, int, int, int], GGUFInfo] = {}
_INFO_CACHE_MAX = 64
_INFO_LOCK = threading.Lock()


def _inspect_cached(path: Path) -> GGUFInfo:
    """``inspect(path)``, remembered while the file is unchanged (same inode, size, mtime).

    `mfc serve` opens the image on every request, and parsing the tensor table of a
    0.4B model takes ~80 ms of CPU (GIL held) — time taken from running decodes and
    added to every request's first token. GGUFInfo is frozen, so sharing it is safe.
    """
    try:
        st = path.stat()
    except OSError:
        return inspect(path)  # it says why, as a GGUFFormatError
    key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with _INFO_LOCK:
        info = _INFO_CACHE.get(key)
    if info is None:
        info = inspect(path)
        with _INFO_LOCK:
            if len(_INFO_CACHE) >= _INFO_CACHE_MAX:
                _INFO_CACHE.clear()
            _INFO_CACHE[key] = info
    return info


def read_gguf_info(paths: Sequence[Path]) -> GGUFInfo:
    """Header facts of a model file, or of a split set (its shards in order).

    Raises IMAGE_UNREADABLE when a file is not a readable GGUF.
    """
    infos = []
    for path in paths:
        try:
            infos.append(_inspect_cached(path))
        except GGUFFormatError as exc:
            raise codes.IMAGE_UNREADABLE.error(
                f"{path} is not a usable GGUF file: {exc.reason}",
                hint="use a complete GGUF model file; for a model in the store, "
                "`mfc verify` checks its blobs",
            ) from None
    return infos[0] if len(infos) == 1 else merge_split(infos)


def _text(store: Store, layer: Descriptor) -> str:
    try:
        return store.read_blob(layer.digest).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LayerError(layer.digest, layer.media_type, f"is not UTF-8 text: {exc}") from None


def _json(store: Store, layer: Descriptor, kind: type) -> Any:
    try:
        value = json.loads(store.read_blob(layer.digest))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LayerError(layer.digest, layer.media_type, f"is not valid JSON: {exc}") from None
    if not isinstance(value, kind):
        raise LayerError(layer.digest, layer.media_type, f"is not a JSON {kind.__name__}")
    return value


def read_params(store: Store, manifest: Manifest) -> dict[str, ParamValue]:
    """The params layer(s) merged, lists as tuples (the parameter table's repeatables)."""
    params: dict[str, ParamValue] = {}
    for layer in manifest.layers_of(mt.PARAMS):
        for key, value in _json(store, layer, dict).items():
            params[key] = tuple(str(v) for v in value) if isinstance(value, list) else value
    return params


def read_messages(store: Store, manifest: Manifest) -> tuple[ChatMessage, ...]:
    messages = []
    for layer in manifest.layers_of(mt.MESSAGES):
        for item in _json(store, layer, list):
            if not (
                isinstance(item, dict)
                and isinstance(item.get("role"), str)
                and isinstance(item.get("content"), str)
            ):
                raise LayerError(
                    layer.digest, layer.media_type, "holds a message without role and content"
                )
            messages.append(ChatMessage(item["role"], item["content"]))
    return tuple(messages)


def read_adapters(
    store: Store, manifest: Manifest, config: Mapping[str, Any]
) -> tuple[Adapter, ...]:
    """Adapter layers with their scales, paired by position (one adapter may appear twice)."""
    scales = adapter_scales(config, manifest)
    return tuple(
        Adapter(store.blob_path(d.digest), scale, d.digest, d.size)
        for d, (_, scale) in zip(manifest.layers_of(mt.ADAPTER), scales, strict=True)
    )


def _header_facts(paths: Sequence[Path]) -> GGUFInfo:
    """The header when it can be read; an empty record when not (show what the config has)."""
    try:
        return read_gguf_info(paths) if paths else GGUFInfo()
    except (DiagnosticError, OSError):  # unreadable: the config's facts stand alone
        return GGUFInfo()


def view_manifest(
    store: Store,
    name: ModelName,
    manifest: Manifest,
    *,
    header: bool = False,
    modified: float | None = None,
) -> ImageView:
    """The view of a manifest already read (the builder's FROM, `mfc list`).

    ``header=True`` reads the model GGUF's header and fails (IMAGE_UNREADABLE) if
    it cannot; otherwise it is read only when the config lacks a fact, and a
    damaged header just leaves that fact unknown.
    """
    config = read_config(store, manifest)
    shards = tuple(store.blob_path(d.digest) for d in manifest.layers_of(mt.MODEL))
    gguf = GGUFInfo()
    if header:
        gguf = read_gguf_info(shards) if shards else GGUFInfo()
    elif any(
        config.get(k) in (None, "") for k in ("model_family", "context_length", "embedding_length")
    ):
        gguf = _header_facts(shards)
    template = manifest.layer(mt.TEMPLATE)
    system = manifest.layer(mt.SYSTEM)
    return ImageView(
        name=name.display,
        model_path=shards[0] if shards else None,
        gguf=gguf,
        adapters=read_adapters(store, manifest, config),
        template=_text(store, template) if template else None,
        system=_text(store, system) if system else None,
        messages=read_messages(store, manifest),
        params=read_params(store, manifest),
        licenses=tuple(_text(store, d) for d in manifest.layers_of(mt.LICENSE)),
        digest=manifest.digest,
        config=config,
        ref=name,
        manifest=manifest,
        shards=shards,
        projectors=tuple(store.blob_path(d.digest) for d in manifest.layers_of(mt.PROJECTOR)),
        modified=modified,
    )


def read_image(store: Store, name: ModelName | str, *, header: bool = False) -> ImageView:
    """Resolve ``name`` in ``store`` and read its image (see ``view_manifest``).

    Raises the store's typed errors: InvalidNameError, ModelNotFoundError,
    StoreError (LayerError for a layer that is not what its media type says).
    """
    resolved = store.resolve(name)
    manifest = store.read_manifest(resolved)
    try:
        modified: float | None = store.manifest_path(resolved).stat().st_mtime
    except OSError:
        modified = None
    return view_manifest(store, resolved, manifest, header=header, modified=modified)


def image_of_gguf(
    path: Path,
    *,
    adapters: tuple[Adapter, ...] = (),
    template: str | None = None,
    system: str | None = None,
    messages: tuple[ChatMessage, ...] = (),
    params: Mapping[str, ParamValue] | None = None,
) -> ImageView:
    """A bare GGUF file (or shard 1 of a split set) as an image with no layers of its own."""
    path = Path(path)
    try:
        shards = split_set(path) or [path]
    except GGUFFormatError as exc:
        raise codes.IMAGE_UNREADABLE.error(
            f"{path}: {exc.reason}",
            hint="a split model needs every shard, named as when it was split, in one directory",
        ) from None
    return ImageView(
        name=str(path),
        model_path=shards[0],  # llama.cpp finds the other shards by name
        gguf=read_gguf_info(shards),
        adapters=adapters,
        template=template,
        system=system,
        messages=messages,
        params=dict(params or {}),
        shards=tuple(shards),
    )
