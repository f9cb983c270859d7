"""Where FROM/ADAPTER inputs live on disk, and where the registry cache is.

Paths in a Modelfile are relative to the Modelfile's directory (``~`` expands; what
can only be a path is ``mfc.modelfile.refs``). The registry cache (an OCI image
layout of base models, vendored like a dependency cache) is found, first match wins:

1. ``--registry-cache DIR`` (the ``registry_cache=`` argument);
2. ``$MFC_REGISTRY_CACHE``;
3. a ``registry_cache/`` directory holding an ``oci-layout`` file in the
   Modelfile's directory or any parent, then in the working directory or any
   parent (a project vendors its base models next to its Modelfiles; the mfc
   repository's own ``registry_cache/`` is found this way by ``make demo``).

Nothing else: the search never looks where mfc itself is installed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from mfc.gguf_meta import SPLIT_RE

REGISTRY_CACHE_ENV = "MFC_REGISTRY_CACHE"
REGISTRY_CACHE_DIRNAME = "registry_cache"


def gguf_files(directory: Path) -> list[Path]:
    """The ``*.gguf`` files directly in ``directory``, sorted by name."""
    try:
        entries = sorted(p for p in directory.iterdir() if p.name.lower().endswith(".gguf"))
    except OSError:
        return []
    return [p for p in entries if p.is_file()]


def pick_gguf(
    directory: Path, exclude: frozenset[Path] = frozenset()
) -> tuple[Path | None, list[Path]]:
    """The one model file of a directory: its only GGUF, or shard 1 of its only split set.

    ``exclude``: files to skip (a projector beside the model). Returns (file or None,
    every GGUF considered) so the caller can say what was ambiguous.
    """
    files = [p for p in gguf_files(directory) if p not in exclude]
    if len(files) == 1:
        return files[0], files
    firsts = [p for p in files if (m := SPLIT_RE.match(p.name)) and int(m["no"]) == 1]
    if len(firsts) == 1:
        m = SPLIT_RE.match(firsts[0].name)
        assert m is not None
        prefix = m["prefix"]
        if all((mm := SPLIT_RE.match(p.name)) and mm["prefix"] == prefix for p in files):
            return firsts[0], files
    return None, files


def _upward(start: Path) -> list[Path]:
    start = start.absolute()
    return [start, *start.parents]


def _is_layout(path: Path) -> bool:
    return (path / "oci-layout").is_file()


def find_registry_cache(
    explicit: Path | None,
    modelfile_dir: Path,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[Path | None, str]:
    """The registry cache to use and how it was chosen (or what was searched)."""
    env = os.environ if environ is None else environ
    if explicit is not None:
        return explicit.expanduser().absolute(), "--registry-cache"
    from_env = env.get(REGISTRY_CACHE_ENV)
    if from_env:
        return Path(from_env).expanduser().absolute(), f"${REGISTRY_CACHE_ENV}"
    starts = [modelfile_dir, cwd if cwd is not None else Path.cwd()]
    for start in starts:
        for directory in _upward(start):
            candidate = directory / REGISTRY_CACHE_DIRNAME
            if _is_layout(candidate):
                return candidate, f"found upward from {start}"
    searched = " and ".join(str(s.absolute()) for s in starts)
    return None, (
        f"no `{REGISTRY_CACHE_DIRNAME}/` in {searched} or their parents, "
        f"and ${REGISTRY_CACHE_ENV} is not set"
    )
