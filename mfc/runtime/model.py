"""A built model as the runtime sees it: blob paths plus the text and JSON layers.

`load_image` is the runtime's only door into the store (data flows one way:
the runtime reads, never writes). `image_from_gguf` makes the same value from a
bare GGUF file, which is how `mfc run ./model.gguf`-style tests and the bench
run before anything is built.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfc.diagnostics import codes
from mfc.gguf_meta import GGUFFormatError, GGUFInfo, inspect, merge_split, split_set
from mfc.modelfile.spec import ParamValue


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # system | user | assistant | tool
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class Adapter:
    path: Path
    scale: float = 1.0
    digest: str = ""


@dataclass(frozen=True)
class ModelImage:
    name: str  # as the user wrote it (or the file path for a bare GGUF)
    model_path: Path  # the file llama.cpp loads (shard 1 of a split model)
    gguf: GGUFInfo = field(default_factory=GGUFInfo)
    adapters: tuple[Adapter, ...] = ()
    template: str | None = None  # TEMPLATE layer (Go or Jinja2)
    system: str | None = None  # SYSTEM layer
    messages: tuple[ChatMessage, ...] = ()  # MESSAGE layers
    params: Mapping[str, ParamValue] = field(default_factory=dict)  # params layer
    licenses: tuple[str, ...] = ()
    digest: str = ""  # manifest digest (model ID); "" for a bare GGUF
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str | None:
        family = self.config.get("model_family") if self.config else None
        return family or self.gguf.architecture


def read_gguf_info(paths: Sequence[Path]) -> GGUFInfo:
    """Header facts of a model file, or of a split set (its shards in order).

    Raises IMAGE_UNREADABLE when a file is not a readable GGUF.
    """
    infos = []
    for path in paths:
        try:
            infos.append(inspect(path))
        except GGUFFormatError as exc:
            raise codes.IMAGE_UNREADABLE.error(
                f"{path} is not a usable GGUF file: {exc.reason}",
                hint="use a complete GGUF model file; for a model in the store, "
                "`mfc verify` checks its blobs",
            ) from None
    return infos[0] if len(infos) == 1 else merge_split(infos)


_stage_lock = threading.Lock()
_stage_root: Path | None = None
_staged: dict[tuple[Path, ...], Path] = {}
_stage_ids = itertools.count()


def stage_split(shards: Sequence[Path]) -> Path:
    """Shard 1 of a split model, under the names llama.cpp looks for; returns its path.

    llama.cpp loads a split model from its first file and finds the others next
    to it as ``<prefix>-0000i-of-0000N.gguf``, but store blobs are named by
    digest. So the shards get symlinks ``model-0000i-of-0000N.gguf`` in a private
    (0700) temp directory, made once per model and process and removed at exit.
    """
    global _stage_root
    key = tuple(Path(s).resolve() for s in shards)
    with _stage_lock:
        first = _staged.get(key)
        if first is not None and first.exists():  # still there (no tmp cleaner ran)
            return first
        if _stage_root is None:
            _stage_root = Path(tempfile.mkdtemp(prefix="mfc-split-"))
            atexit.register(shutil.rmtree, _stage_root, True)
        _stage_root.mkdir(mode=0o700, exist_ok=True)
        directory = _stage_root / str(next(_stage_ids))
        directory.mkdir(mode=0o700)
        count = len(key)
        links = [directory / f"model-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]
        for link, target in zip(links, key, strict=True):
            link.unlink(missing_ok=True)
            os.symlink(target, link)
        _staged[key] = links[0]
        return links[0]


def image_from_gguf(
    path: Path,
    *,
    adapters: tuple[Adapter, ...] = (),
    template: str | None = None,
    system: str | None = None,
    messages: tuple[ChatMessage, ...] = (),
    params: Mapping[str, ParamValue] | None = None,
) -> ModelImage:
    path = Path(path)
    try:
        shards = split_set(path) or [path]
    except GGUFFormatError as exc:
        raise codes.IMAGE_UNREADABLE.error(
            f"{path}: {exc.reason}",
            hint="a split model needs every shard, named as when it was split, in one directory",
        ) from None
    return ModelImage(
        name=str(path),
        model_path=shards[0],  # llama.cpp finds the other shards by name
        gguf=read_gguf_info(shards),
        adapters=adapters,
        template=template,
        system=system,
        messages=messages,
        params=dict(params or {}),
    )


_REPAIR = "`mfc verify` checks every blob; rebuild or re-load the model"


def load_image(name: str, store: Any = None) -> ModelImage:
    """Resolve `name` in the store (`MFC_MODELS`) into a ModelImage."""
    from mfc.store.names import InvalidNameError
    from mfc.store.store import ModelNotFoundError, Store, StoreError

    store = store if store is not None else Store.from_env()
    try:
        manifest = store.read_manifest(name)
    except InvalidNameError as exc:
        raise codes.MODEL_NOT_FOUND.error(
            f"`{name}` is not a valid model name", hint=str(exc)
        ) from None
    except ModelNotFoundError as exc:
        raise codes.MODEL_NOT_FOUND.error(f"model `{name}` not found", hint=exc.hint) from None
    except StoreError as exc:
        raise codes.IMAGE_UNREADABLE.error(
            f"model `{name}` cannot be read: {exc}", hint=_REPAIR
        ) from None
    try:
        return _read_image(store, name, manifest)
    except (StoreError, OSError, ValueError, KeyError, TypeError) as exc:
        raise codes.IMAGE_UNREADABLE.error(
            f"model `{name}` cannot be read: {exc}", hint=_REPAIR
        ) from None


def _read_image(store: Any, name: str, manifest: Any) -> ModelImage:
    from mfc.store import media_types as mt
    from mfc.store.store import adapter_scales, read_config

    def text(layer: Any) -> str:
        return Path(store.blob_path(layer.digest)).read_text(encoding="utf-8")

    def layer_json(layer: Any) -> Any:
        return json.loads(text(layer))

    model_layers = manifest.layers_of(mt.MODEL)
    if not model_layers:
        raise codes.NO_MODEL_LAYER.error(
            f"model `{name}` has no model weights layer",
            hint="rebuild it from a Modelfile whose FROM names a GGUF file or model",
        )
    config = read_config(store, manifest)
    adapters = tuple(
        Adapter(Path(store.blob_path(digest)), scale, digest)
        for digest, scale in adapter_scales(config, manifest)
    )
    params: dict[str, ParamValue] = {}
    for layer in manifest.layers_of(mt.PARAMS):
        for key, value in layer_json(layer).items():
            params[key] = tuple(value) if isinstance(value, list) else value
    messages = tuple(
        ChatMessage(str(m["role"]), str(m["content"]))
        for layer in manifest.layers_of(mt.MESSAGES)
        for m in layer_json(layer)
    )
    template = manifest.layer(mt.TEMPLATE)
    system = manifest.layer(mt.SYSTEM)
    shards = [Path(store.blob_path(layer.digest)) for layer in model_layers]
    return ModelImage(
        name=name,
        model_path=shards[0] if len(shards) == 1 else stage_split(shards),
        gguf=read_gguf_info(shards),
        adapters=adapters,
        template=text(template) if template else None,
        system=text(system) if system else None,
        messages=messages,
        params=params,
        licenses=tuple(text(lic) for lic in manifest.layers_of(mt.LICENSE)),
        digest=manifest.digest,
        config=config,
    )
