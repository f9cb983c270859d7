"""Layers and config of the new image: the base's, with the Modelfile's on top.

The inheritance rules (docs/build.md "Inheritance") over values: the base as resolved
(``ResolvedBase``, whose config, parameters and adapters were read once), the checked
Modelfile, the model layers (maybe quantized) and the new adapters. The only I/O is
``put``, which stores a new small layer's bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mfc.build.compose import AdapterUse, config_json, merge_params, messages_json, order_layers
from mfc.build.sources.base import ResolvedBase
from mfc.gguf_meta import GGUFInfo
from mfc.modelfile.spec import ModelSpec
from mfc.store import media_types as mt
from mfc.store.blobio import Blob
from mfc.store.manifest import Descriptor, canonical_json


def assemble(
    spec: ModelSpec,
    base: ResolvedBase,
    model_layers: tuple[Descriptor, ...],
    info: GGUFInfo,
    new_adapters: Sequence[AdapterUse],
    put: Callable[[bytes], Blob],
    projector: Descriptor | None = None,
) -> tuple[tuple[Descriptor, ...], dict[str, Any]]:
    """(ordered layers, config) of the image ``spec`` builds on ``base``. ``projector``:
    one the Modelfile names (FROM lines), replacing any the base has."""
    inherited = base.layers

    def layer(media_type: str, data: bytes) -> Descriptor:
        return Descriptor(media_type, *put(data))

    def text_layer(media_type: str, text: str) -> Descriptor:
        return layer(media_type, text.encode("utf-8"))

    layers: list[Descriptor] = list(model_layers)
    if projector is not None:
        layers.append(projector)
    else:
        layers += [d for d in inherited if d.media_type == mt.PROJECTOR]

    adapters = [*base.adapters, *new_adapters]
    layers += [a.layer for a in adapters]

    def text_or_inherit(media_type: str, text: str | None) -> None:
        if text is not None:
            layers.append(text_layer(media_type, text))
        else:
            layers.extend(d for d in inherited if d.media_type == media_type)

    text_or_inherit(mt.TEMPLATE, spec.template.value if spec.template else None)
    text_or_inherit(mt.SYSTEM, spec.system.value if spec.system else None)

    if spec.parameters:
        params = merge_params(base.params, spec.parameters)
        layers.append(layer(mt.PARAMS, canonical_json(params)))
    else:
        layers += [d for d in inherited if d.media_type == mt.PARAMS]

    if spec.messages:
        layers.append(layer(mt.MESSAGES, canonical_json(messages_json(spec.messages))))
    else:
        layers += [d for d in inherited if d.media_type == mt.MESSAGES]

    licenses = [d for d in inherited if d.media_type == mt.LICENSE]
    licenses += [text_layer(mt.LICENSE, t.value) for t in spec.licenses]
    seen: set[str] = set()
    for d in licenses:
        if d.digest not in seen:
            seen.add(d.digest)
            layers.append(d)

    known = {*mt.LAYER_ORDER}
    layers += [d for d in inherited if d.media_type not in known]
    ordered = order_layers(layers)

    extras: dict[str, str] = {}
    for key, text in (
        ("requires", spec.requires),
        ("renderer", spec.renderer),
        ("parser", spec.parser),
    ):
        if text is not None:
            extras[key] = text.value
        elif isinstance(base.config.get(key), str):
            extras[key] = base.config[key]
    config = config_json(info, ordered, tuple(adapters), dict(spec.build_args), extras)
    return ordered, config
