"""The `mfc parse --json` form of the syntax IR."""

from __future__ import annotations

from typing import Any

from mfc.modelfile.ir import Instruction


def instruction_to_json(inst: Instruction) -> dict[str, Any]:
    """The `mfc parse --json` form of one instruction."""
    out: dict[str, Any] = {"instruction": inst.keyword, "value": inst.value}
    if inst.keyword == "PARAMETER":
        out["name"] = inst.name
    elif inst.keyword == "MESSAGE":
        out["role"] = inst.role
    elif inst.keyword == "ADAPTER":
        out["flags"] = {f.name: f.value for f in inst.flags}
    out["line"] = inst.span.line if inst.span else None
    out["column"] = inst.span.column if inst.span else None
    return out
