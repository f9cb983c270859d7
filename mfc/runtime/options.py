"""Which value each llama.cpp option gets, and whether changing it needs a reload.

Precedence, lowest first: the parameter table's defaults (the one source of
defaults; `num_ctx` may come from `MFC_CONTEXT_LENGTH`), the model image's params
layer (the builder has already merged the base model's params under the
Modelfile's own), then the request / REPL overrides. Pure: no llama_cpp here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mfc.modelfile.params import PARAMETERS, ParamSpec
from mfc.modelfile.spec import ParamValue

CONTEXT_ENV = "MFC_CONTEXT_LENGTH"

# Parameters the table accepts (Ollama has them) that the runtime cannot honour yet:
# setting one is a warning, never a reload. name -> why.
UNSUPPORTED: dict[str, str] = {
    "draft_num_predict": "not supported yet (no draft model runtime: mfc does no speculative "
    "decoding, so the DRAFT model and this value are ignored)",
}


def unsupported_warning(name: str) -> str | None:
    """The warning for setting ``name``, if the runtime ignores it."""
    why = UNSUPPORTED.get(name)
    return f"parameter `{name}` is {why}" if why else None


def parameter_table() -> Mapping[str, ParamSpec]:
    return PARAMETERS


def table_defaults() -> dict[str, ParamValue]:
    """Every parameter that has a default (deprecated ones have none)."""
    return {name: spec.default for name, spec in PARAMETERS.items() if spec.default is not None}


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """Everything that is fixed when the model and context are created."""

    n_ctx: int
    n_batch: int
    n_threads: int | None  # None: llama-cpp-python's choice
    n_gpu_layers: int
    main_gpu: int
    use_mmap: bool
    # Off keeps greedy output batch-invariant (a sequence answers the same alone or
    # batched with others); on is a few percent faster on long contexts.
    flash_attn: bool = False
    # K/V cache cell type (`OLLAMA_KV_CACHE_TYPE`): f16, or a quantized type to save memory.
    # llama.cpp quantizes the V cache only with flash attention on.
    kv_cache_type: str = "f16"


def _default(name: str) -> Any:
    """A parameter's default from the table (the one source of defaults)."""
    default = PARAMETERS[name].default
    assert default is not None, f"the parameter table has no default for {name}"
    return default


@dataclass(frozen=True, slots=True)
class SamplingOptions:
    """Per-generation settings: changing them never reloads the model.

    Every default is the parameter table's (``mfc.modelfile.params``).
    """

    temperature: float = _default("temperature")
    top_k: int = _default("top_k")
    top_p: float = _default("top_p")
    min_p: float = _default("min_p")
    typical_p: float = _default("typical_p")
    repeat_penalty: float = _default("repeat_penalty")
    repeat_last_n: int = _default("repeat_last_n")
    presence_penalty: float = _default("presence_penalty")
    frequency_penalty: float = _default("frequency_penalty")
    seed: int = _default("seed")
    num_predict: int = _default("num_predict")
    stop: tuple[str, ...] = _default("stop")
    num_keep: int = _default("num_keep")


@dataclass(frozen=True)
class Resolved:
    values: Mapping[str, ParamValue]  # every option with its effective value
    warnings: tuple[str, ...] = ()

    def load(self) -> LoadOptions:
        v = {**table_defaults(), **self.values}  # the table fills what a caller left out

        def num(name: str) -> int:
            value = v[name]
            assert not isinstance(value, tuple), name
            return int(value)

        threads = num("num_thread")
        n_ctx = num("num_ctx")
        return LoadOptions(
            n_ctx=n_ctx,
            # As Ollama and llama.cpp: a batch never exceeds the context (a huge num_batch
            # would otherwise size llama.cpp's buffers by it and exhaust memory).
            n_batch=min(num("num_batch"), n_ctx),
            n_threads=threads if threads > 0 else None,
            n_gpu_layers=num("num_gpu"),
            main_gpu=num("main_gpu"),
            use_mmap=bool(v["use_mmap"]),
        )

    def sampling(self) -> SamplingOptions:
        defaults = SamplingOptions()
        kwargs: dict[str, Any] = {}
        for name, value in self.values.items():
            if name not in SamplingOptions.__dataclass_fields__:
                continue
            if name == "stop":
                kwargs[name] = value if isinstance(value, tuple) else (str(value),)
            else:
                kwargs[name] = type(getattr(defaults, name))(value)  # the table's type
        return SamplingOptions(**kwargs)


def resolve(
    image_params: Mapping[str, ParamValue],
    overrides: Mapping[str, ParamValue] | None = None,
    *,
    trained_ctx: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Resolved:
    """Merge the layers and clamp `num_ctx` to what the model was trained for."""
    env = os.environ if env is None else env
    warnings: list[str] = []
    values: dict[str, ParamValue] = table_defaults()
    default_ctx = int(values["num_ctx"])  # type: ignore[arg-type]
    source = "default"
    env_ctx = env.get(CONTEXT_ENV, "").strip()
    if env_ctx:
        try:
            values["num_ctx"] = int(env_ctx)
            source = CONTEXT_ENV
        except ValueError:
            warnings.append(f"ignoring {CONTEXT_ENV}={env_ctx!r}: not an integer")
    table = parameter_table()
    for layer in (image_params, overrides or {}):
        for name, value in layer.items():
            spec = table.get(name)
            if spec is None or spec.deprecated:
                warnings.append(f"ignoring parameter `{name}`: not a llama.cpp option mfc uses")
            elif name in UNSUPPORTED:
                if value != spec.default:
                    warnings.append(unsupported_warning(name) or "")
            else:
                values[name] = value
    if "num_ctx" in (overrides or {}) or "num_ctx" in image_params:
        source = "num_ctx"
    ctx_value = values["num_ctx"]
    num_ctx = int(ctx_value) if not isinstance(ctx_value, tuple) else default_ctx
    if num_ctx < 1:
        warnings.append(f"num_ctx {num_ctx} is not positive; using {default_ctx}")
        num_ctx = default_ctx
    if trained_ctx and num_ctx > trained_ctx:
        # The default quietly fits the model; a value someone chose is reported.
        if source != "default":
            warnings.append(
                f"{source} {num_ctx} is larger than the model's trained context "
                f"{trained_ctx}; using {trained_ctx}"
            )
        num_ctx = trained_ctx
    values["num_ctx"] = num_ctx
    return Resolved(values, tuple(warnings))


def is_load_param(name: str) -> bool:
    """Changing this parameter needs a model reload (the table's `phase`)."""
    spec = parameter_table().get(name)
    return spec is not None and spec.phase == "load" and name not in UNSUPPORTED
