"""What every handler shares: configuration, the store, the scheduler, model facts.

Models are read through the one image view (``mfc.store.image``) and shown
through the one renderer (``mfc.store.show``), the same code as `mfc show`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from dataclasses import dataclass, field
from typing import Any

from mfc.server import ollama as ol
from mfc.server.config import ServerConfig
from mfc.server.scheduler import Loaded, Scheduler
from mfc.store import Store
from mfc.store.image import ImageView, read_image

log = logging.getLogger("mfc.server")


def facts(view: ImageView) -> ol.ModelFacts:
    return ol.ModelFacts(
        format=view.format,
        family=view.architecture or "",
        families=view.families or None,
        parameter_size=view.parameter_size or "",
        quantization_level=view.quantization or "",
        context_length=view.context_length or 0,
        embedding_length=view.embedding_length or 0,
    )


@dataclass
class ServerState:
    config: ServerConfig
    store: Store
    scheduler: Scheduler
    _prune_lock: threading.Lock = field(default_factory=threading.Lock)

    def model_info(self, name: str, view: ImageView) -> dict[str, Any]:
        """What /api/ps reports about a loaded model (kept with it by the scheduler)."""
        shown = view.display if view.ref is not None else name
        return {"name": shown, "digest": view.digest, "size": view.size, "facts": facts(view)}

    # -- routes' work (run in a thread: they touch the disk) --------------------------------------

    def list_models(self) -> list[dict[str, Any]]:
        out = []
        for entry in self.store.list_models():
            try:
                view = read_image(self.store, entry.name)
            except Exception as exc:  # one damaged model must not hide the others
                log.warning("listing %s: %s", entry.name.display, exc)
                continue
            out.append(
                ol.tags_entry(
                    entry.name,
                    facts(view),
                    size=entry.size,
                    digest=entry.digest,
                    modified_ns=int(entry.modified * 1e9),
                    capabilities=view.capabilities(),
                )
            )
        return out

    def show(self, name: str, verbose: bool) -> dict[str, Any]:
        from mfc.store.show import (
            UnrepresentableError,
            parameters_text,
            projector_info,
            render_modelfile,
        )

        view = read_image(self.store, name, header=True)
        try:
            modelfile = render_modelfile(view)
        except UnrepresentableError as exc:  # split models: no Modelfile spelling
            modelfile = f"# this model cannot be written as a Modelfile: {exc}\n"
        return ol.show_response(
            facts(view),
            model_info=view.model_info(),
            modified_ns=int((view.modified or 0) * 1e9),
            license=view.licenses,
            modelfile=modelfile,
            parameters=parameters_text(view.params),
            template=view.template or "",
            system=view.system or "",
            messages=[m.to_dict() for m in view.messages],
            capabilities=view.capabilities(),
            projector_info=projector_info(view),
        )

    def ps_entry(self, model: Loaded) -> dict[str, Any]:
        info = model.info
        return ol.ps_entry(
            str(info.get("name") or model.name),
            info.get("facts") or ol.ModelFacts(),
            size=int(info.get("size") or 0),
            size_vram=0,
            digest=str(info.get("digest") or model.spec.digest),
            context_length=model.context_length,
            expires_at_ns=None if model.expires_at == math.inf else int(model.expires_at * 1e9),
        )

    def prune(self) -> None:
        """Remove blobs no manifest references (Ollama does this on delete unless NOPRUNE)."""
        with self._prune_lock, contextlib.suppress(Exception):
            self.store.gc()
