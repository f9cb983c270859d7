"""A built model as the runtime sees it: the store's image view, with a loadable model path.

`load_image` is the runtime's only door into the store (data flows one way:
the runtime reads, never writes); the image itself is ``mfc.store.image.ImageView``
(``ModelImage`` here), read in one place for `mfc show`, `mfc run` and the server.
What the runtime adds is where llama.cpp finds a split model's shards
(``stage_split``). `image_from_gguf` makes the same value from a bare GGUF file,
which is how `mfc run ./model.gguf`, tests and the bench run before anything is built.
"""

from __future__ import annotations

import atexit
import dataclasses
import itertools
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mfc.diagnostics import codes
from mfc.store.image import REPAIR_HINT, Adapter, ChatMessage, ImageView, read_gguf_info
from mfc.store.image import image_of_gguf as image_from_gguf

if TYPE_CHECKING:
    from mfc.store.store import Store

ModelImage = ImageView  # the runtime reads the one image view; it has no second model

__all__ = [
    "Adapter",
    "ChatMessage",
    "ModelImage",
    "image_from_gguf",
    "load_image",
    "read_gguf_info",
    "stage_split",
]

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


def load_image(name: str, store: Store | None = None) -> ModelImage:
    """Resolve `name` in the store (`MFC_MODELS`) into the image llama.cpp can load.

    Every failure is a coded diagnostic: MF301 for a name that is invalid or not
    in the store, MF302 for an image without weights, MF309 for one whose
    blobs or layers cannot be read.
    """
    from mfc.store.image import read_image
    from mfc.store.names import InvalidNameError
    from mfc.store.store import ModelNotFoundError, Store, StoreError

    store = store if store is not None else Store.from_env()
    try:
        view = read_image(store, name, header=True)
    except InvalidNameError as exc:
        raise codes.MODEL_NOT_FOUND.error(
            f"`{name}` is not a valid model name", hint=str(exc)
        ) from None
    except ModelNotFoundError as exc:
        raise codes.MODEL_NOT_FOUND.error(f"model `{name}` not found", hint=exc.hint) from None
    except (StoreError, OSError) as exc:
        raise codes.IMAGE_UNREADABLE.error(
            f"model `{name}` cannot be read: {exc}", hint=REPAIR_HINT
        ) from None
    view = dataclasses.replace(view, name=name)  # as the user wrote it (/show, /save print it)
    weights = view.weights()  # MF302 for an image without a model layer
    if len(view.shards) > 1:
        weights = stage_split(view.shards)
    return dataclasses.replace(view, model_path=weights)
