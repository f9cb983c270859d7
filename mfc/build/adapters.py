"""Does a LoRA adapter fit a base model? The same checks llama.cpp makes at load time.

Run at build time so a bad ADAPTER line is a located build error instead of a
crash (or a silently wrong model) the first time someone runs the model.
Mirrors ``llama_adapter_lora_init`` in llama.cpp: every ``X.lora_a``/``X.lora_b``
pair targets a base tensor ``X`` with ``X.ne0 == a.ne0``, ``X.ne1 == b.ne1`` and
``a.ne1 == b.ne0`` (the rank); ``token_embd`` is stored transposed.
"""

from __future__ import annotations

from mfc.gguf_meta import GGUFInfo

_A, _B = ".lora_a", ".lora_b"


def adapter_problem(adapter: GGUFInfo, base: GGUFInfo) -> tuple[str, str] | None:
    """``(what is wrong, how to fix it)`` or None when the adapter fits the base."""
    if not adapter.is_adapter:
        return (
            f"not a LoRA adapter: its `general.type` is `{adapter.general_type}`",
            "ADAPTER takes a GGUF LoRA adapter (general.type=adapter); "
            "convert it with llama.cpp's convert_lora_to_gguf.py",
        )
    if adapter.adapter_type not in (None, "lora"):
        return (
            f"unsupported adapter type `{adapter.adapter_type}` (only `lora` is supported)",
            "use a LoRA adapter",
        )
    if adapter.architecture != base.architecture:
        return (
            f"the adapter is for architecture `{adapter.architecture}` "
            f"but the base model is `{base.architecture}`",
            "use an adapter trained for this base model",
        )

    tensors = adapter.tensor_map()
    targets = sorted(
        {name[: -len(_A)] for name in tensors if name.endswith(_A)}
        | {name[: -len(_B)] for name in tensors if name.endswith(_B)}
    )
    if not targets:
        return ("the adapter has no LoRA tensors (`*.lora_a` / `*.lora_b`)", "")
    base_tensors = base.tensor_map()
    wrong_base = "use an adapter trained for this base model (maybe the wrong base?)"
    for target in targets:
        a, b = tensors.get(target + _A), tensors.get(target + _B)
        if a is None or b is None:
            missing = target + (_A if a is None else _B)
            return (f"the adapter tensor `{missing}` is missing", "")
        model = base_tensors.get(target)
        if model is None:
            return (
                f"the adapter targets `{target}`, which the base model does not have",
                wrong_base,
            )
        if len(model.shape) < 2 or len(a.shape) < 2 or len(b.shape) < 2:
            return (f"the adapter tensors for `{target}` are not matrices", "")
        if target.startswith("token_embd"):
            fits = model.shape[0] == b.shape[1] and model.shape[1] == a.shape[1]
        else:
            fits = model.shape[0] == a.shape[0] and model.shape[1] == b.shape[1]
        if not fits:
            return (
                f"the adapter's shapes for `{target}` (lora_a {list(a.shape)}, "
                f"lora_b {list(b.shape)}) do not fit the base tensor {list(model.shape)}",
                wrong_base,
            )
        if not target.startswith("token_embd") and a.shape[1] != b.shape[0]:
            return (
                f"the adapter's `{target}` lora_a rank {a.shape[1]} differs from "
                f"lora_b rank {b.shape[0]}",
                "",
            )
    return None
