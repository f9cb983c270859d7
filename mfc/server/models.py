"""From a model name in a request to what the scheduler loads and the prompt builder needs.

The server reads images through the same code as `mfc run` (``load_image``),
resolves options through the same precedence (table defaults < the image's
params < the request's ``options``), and turns the load-time part into a
``LoadSpec``: the scheduler's identity for one loaded engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mfc.diagnostics import codes
from mfc.diagnostics.diagnostic import DiagnosticError
from mfc.modelfile.spec import ParamValue
from mfc.runtime import options as opts
from mfc.runtime.model import ModelImage, load_image
from mfc.server.scheduler import LoadSpec
from mfc.store import InvalidNameError, Store, parse_name


class ModelNotFound(LookupError):
    def __init__(self, name: str):
        super().__init__(f'model "{name}" not found')
        self.name = name


class InvalidModelName(ValueError):
    pass


def parse_model_name(text: str) -> str:
    """The store key of ``text``; InvalidModelName with the grammar's reason."""
    try:
        return str(parse_name(text))
    except InvalidNameError as exc:
        raise InvalidModelName(f"invalid model name {text!r}: {exc}") from None


def open_image(store: Store, name: str) -> ModelImage:
    """The image named ``name``: ModelNotFound, InvalidModelName, or DiagnosticError (damaged)."""
    parse_model_name(name)
    if not store.manifest_path(name).exists():
        try:
            store.resolve(name)  # case-insensitive match, as Ollama does
        except Exception:
            raise ModelNotFound(name) from None
    try:
        return load_image(name, store)
    except DiagnosticError as exc:
        if exc.diagnostics and exc.diagnostics[0].code == codes.MODEL_NOT_FOUND.code:
            raise ModelNotFound(name) from None
        raise


@dataclass(frozen=True)
class Prepared:
    image: ModelImage
    resolved: opts.Resolved
    spec: LoadSpec

    @property
    def sampling(self) -> opts.SamplingOptions:
        return self.resolved.sampling()


def prepare(
    image: ModelImage,
    overrides: Mapping[str, ParamValue],
    *,
    context_length: int,
    num_parallel: int,
    flash_attention: bool,
    kv_cache_type: str = "f16",
) -> Prepared:
    """Options resolved for one request and the engine they need."""
    resolved = opts.resolve(
        image.params,
        overrides,
        trained_ctx=image.gguf.context_length,
        env={opts.CONTEXT_ENV: str(context_length)},
    )
    load = resolved.load()
    load_pairs: dict[str, Any] = {
        name: getattr(load, name) for name in type(load).__dataclass_fields__
    }
    load_pairs["flash_attn"] = flash_attention
    load_pairs["kv_cache_type"] = kv_cache_type
    spec = LoadSpec(
        digest=image.digest or str(image.model_path),
        model_path=str(image.model_path),
        adapters=tuple((str(a.path), float(a.scale)) for a in image.adapters),
        load=tuple(sorted(load_pairs.items())),
        n_seq_max=num_parallel,
        # Ollama loads the first projector layer (one is all its models have)
        projector=str(image.projectors[0]) if image.projectors else None,
    )
    return Prepared(image, resolved, spec)


def sampling_wire(sampling: opts.SamplingOptions) -> dict[str, Any]:
    """SamplingOptions as the runner protocol's JSON object."""
    out = {name: getattr(sampling, name) for name in type(sampling).__dataclass_fields__}
    out["stop"] = list(sampling.stop)
    return out
