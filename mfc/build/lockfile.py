"""``Modelfile.lock``: what every FROM/ADAPTER resolved to, and what the build produced.

Written (atomically) by every build, next to the Modelfile; meant to be
committed. ``--locked`` compares a fresh resolution with it and refuses to
build on any drift, listing each difference — the ``cargo build --locked``
contract for model images. The lock holds no absolute paths when inputs live
under the Modelfile's directory, so it is the same on every checkout.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfc.store.fsutil import atomic_write_bytes

LOCK_VERSION = 1


def lock_path(modelfile: Path) -> Path:
    """``Modelfile`` → ``Modelfile.lock``; ``foo.modelfile`` → ``foo.modelfile.lock``."""
    return modelfile.with_name(modelfile.name + ".lock")


@dataclass(frozen=True, slots=True)
class LockedInput:
    instruction: str  # "FROM" | "ADAPTER"
    ref: str  # as written in the Modelfile (after ARG substitution)
    kind: str  # "file" | "projector" | "modelfile" | "model" | "registry_cache"
    digest: str  # file: the blob digest (shard 1 for split sets); others: a manifest digest
    path: str | None = None  # file/modelfile inputs: relative to the Modelfile dir when inside it
    size: int | None = None  # file inputs: total bytes
    name: str | None = None  # model/registry_cache inputs: the full model name
    scale: float | None = None  # ADAPTER only

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "instruction": self.instruction,
            "ref": self.ref,
            "kind": self.kind,
            "digest": self.digest,
        }
        for key in ("path", "size", "name", "scale"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LockedInput:
        return cls(
            instruction=str(data["instruction"]),
            ref=str(data["ref"]),
            kind=str(data["kind"]),
            digest=str(data["digest"]),
            path=data.get("path"),
            size=data.get("size"),
            name=data.get("name"),
            scale=data.get("scale"),
        )

    def describe(self) -> str:
        return f"{self.instruction} {self.ref}"


@dataclass(frozen=True, slots=True)
class Lock:
    inputs: tuple[LockedInput, ...]
    build_args: tuple[tuple[str, str], ...]
    quantize: str | None
    manifest: str | None  # the resulting manifest digest

    def to_bytes(self) -> bytes:
        data = {
            "lockVersion": LOCK_VERSION,
            "inputs": [i.to_json() for i in self.inputs],
            "build_args": dict(self.build_args),
            "quantize": self.quantize,
            "manifest": self.manifest,
        }
        return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Lock:
        """Raises ValueError (with a readable message) for a malformed lock."""
        try:
            obj = json.loads(data)
            if obj.get("lockVersion") != LOCK_VERSION:
                raise ValueError(f"unsupported lockVersion {obj.get('lockVersion')!r}")
            return cls(
                inputs=tuple(LockedInput.from_json(i) for i in obj["inputs"]),
                build_args=tuple(sorted((str(k), str(v)) for k, v in obj["build_args"].items())),
                quantize=obj.get("quantize"),
                manifest=obj.get("manifest"),
            )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"malformed lockfile: {exc}") from exc


def read_lock(path: Path) -> Lock | None:
    """The lock at ``path``; None when there is none. ValueError when it is malformed."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return Lock.from_bytes(data)


def write_lock(path: Path, lock: Lock) -> None:
    atomic_write_bytes(path, lock.to_bytes())


@dataclass(frozen=True, slots=True)
class Drift:
    """One difference between the lock and a fresh resolution."""

    message: str
    input_index: int | None = None  # which of the fresh inputs (0 = FROM); None: not an input


def drift(locked: Lock, fresh: Lock) -> list[Drift]:
    """Each way ``fresh`` (this build's resolution) differs from ``locked``; empty = none."""
    changes: list[Drift] = []
    for i in range(max(len(locked.inputs), len(fresh.inputs))):
        old = locked.inputs[i] if i < len(locked.inputs) else None
        new = fresh.inputs[i] if i < len(fresh.inputs) else None
        if old is None and new is not None:
            changes.append(Drift(f"{new.describe()}: not in the lockfile (now {new.digest})", i))
        elif new is None and old is not None:
            changes.append(
                Drift(f"{old.describe()}: in the lockfile but no longer in the Modelfile")
            )
        elif old is not None and new is not None:
            if (old.instruction, old.ref) != (new.instruction, new.ref):
                message = f"input {i + 1}: was `{old.describe()}`, now `{new.describe()}`"
            elif old.digest != new.digest:
                message = f"{new.describe()}: locked {old.digest}, now resolves to {new.digest}"
            elif old.kind != new.kind and not _same_pinned_image(old, new):
                message = f"{new.describe()}: locked as a {old.kind}, now a {new.kind}"
            elif old.scale != new.scale:
                message = f"{new.describe()}: scale locked {old.scale}, now {new.scale}"
            else:
                continue
            changes.append(Drift(message, i))
    old_args, new_args = dict(locked.build_args), dict(fresh.build_args)
    for key in sorted(old_args.keys() | new_args.keys()):
        old_arg, new_arg = old_args.get(key), new_args.get(key)
        if old_arg != new_arg:
            changes.append(Drift(f"build arg {key}: locked {_show(old_arg)}, now {_show(new_arg)}"))
    if locked.quantize != fresh.quantize:
        changes.append(Drift(f"--quantize: locked {locked.quantize}, now {fresh.quantize}"))
    return changes


def _show(value: str | None) -> str:
    return "unset" if value is None else f"`{value}`"


def _same_pinned_image(old: LockedInput, new: LockedInput) -> bool:
    """``FROM [name]@sha256:…`` found in the store on one machine and in the registry cache
    on another is the same image: the digest pins it, where it came from does not matter."""
    kinds = {"model", "registry_cache"}
    return "@sha256:" in new.ref and {old.kind, new.kind} <= kinds and old.digest == new.digest
