"""The builder: a checked Modelfile → a content-addressed model image in the store.

Public API (everything else is internal)::

    build_modelfile(path, tag, *, store, ...) -> BuildResult   # `mfc build`
    build_text(text, base_dir, tag, *, store, ...) -> BuildResult  # REPL `/save`

Both raise ``DiagnosticError`` for problems in the user's input (located on
the Modelfile line that caused them) and let ``StoreError``/``OSError``
through for I/O failures. See docs/build.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mfc.build.builder import Builder
from mfc.build.events import BuildEvent, Progress
from mfc.build.result import BuildResult
from mfc.store.names import ModelName
from mfc.store.store import LinkMode, Store

__all__ = ["BuildEvent", "BuildResult", "Builder", "Progress", "build_modelfile", "build_text"]


def build_modelfile(
    path: Path,
    tag: str | ModelName | None,
    *,
    store: Store,
    build_args: Mapping[str, str] | None = None,
    locked: bool = False,
    no_cache: bool = False,
    quantize: str | None = None,
    link: LinkMode = "auto",
    registry_cache: Path | None = None,
    progress: Progress | None = None,
) -> BuildResult:
    """Build the Modelfile at ``path`` (a file, or a directory holding ``Modelfile``).

    ``tag`` None builds without naming the result (the blobs are stored, no
    manifest is written). ``Modelfile.lock`` is (re)written next to the file.
    """
    from mfc.modelfile.refs import modelfile_in

    path = modelfile_in(Path(path))
    builder = Builder(
        store,
        build_args=build_args,
        locked=locked,
        no_cache=no_cache,
        quantize=quantize,
        link=link,
        registry_cache=registry_cache,
        progress=progress,
    )
    return builder.build_file(path, tag)


def build_text(
    text: str,
    base_dir: Path,
    tag: str | ModelName | None,
    *,
    store: Store,
    source: str = "<modelfile>",
    build_args: Mapping[str, str] | None = None,
    no_cache: bool = False,
    quantize: str | None = None,
    link: LinkMode = "auto",
    registry_cache: Path | None = None,
    progress: Progress | None = None,
) -> BuildResult:
    """Build Modelfile ``text`` held in memory; relative paths resolve against ``base_dir``.

    No lockfile is written. To build on an existing model whose name is also
    ``tag`` (e.g. REPL ``/save`` over the running model), pin the base by
    digest — ``FROM name@sha256:<hex>`` — since ``FROM tag`` never resolves to
    the model being replaced.
    """
    from mfc.build.frontend import check_text

    builder = Builder(
        store,
        build_args=build_args,
        no_cache=no_cache,
        quantize=quantize,
        link=link,
        registry_cache=registry_cache,
        progress=progress,
    )
    spec, warnings = check_text(text, source, builder.build_args)
    return builder.build_spec(spec, Path(base_dir), tag, warnings=warnings)
