"""What a FROM/ADAPTER/DRAFT value can mean: the one rule, shared by the checker and the builder.

Ollama decides by existence alone: a value that names an existing file or directory
(relative to the Modelfile) is a path; anything else is a model name
(``parser.CreateRequest``: a FROM whose path does not exist becomes ``req.From``), so
``FROM ./x.gguf`` with no such file fails later as "invalid model name", and
``FROM w.safetensors`` would be pulled as the model ``w.safetensors:latest``.

mfc keeps "an existing path wins", and adds one rule so a typo in a file name is
reported as a missing file (MF110 in the checker, MF205 in the builder) and never
searched for as a name: a value that **can only be a path** —

- it starts like one: ``/``, ``./``, ``../``, ``~``, ``\\``, ``.\\``, ``..\\``, or a
  drive (``C:\\``, ``C:/``); or it is ``.`` or ``..``;
- or its last part ends with a model-file suffix: ``.gguf``, ``.safetensors``, ``.bin``
  (Ollama detects these as weight files), or with ``modelfile`` (``Modelfile``,
  ``base.modelfile``), any case.

Everything else (``llama3``, ``me/model:1.0``, ``name@sha256:…``) is a name if no
such path exists.
"""

from __future__ import annotations

import re
from pathlib import Path

_PATH_PREFIXES = ("/", "./", "../", "~", "\\", ".\\", "..\\")
_MODEL_FILE_SUFFIXES = (".gguf", ".safetensors", ".bin")
_DRIVE = re.compile(r"[A-Za-z]:[\\/]")


def is_modelfile_name(name: str) -> bool:
    """A file name that is a Modelfile (``Modelfile``, ``x.modelfile``, ``prod.Modelfile``)."""
    return name.lower().endswith("modelfile")


def looks_like_path(value: str) -> bool:
    """True when ``value`` can only mean a file or directory (never a model name)."""
    return (
        value.startswith(_PATH_PREFIXES)
        or value in (".", "..")
        or _DRIVE.match(value) is not None
        or value.lower().endswith(_MODEL_FILE_SUFFIXES)
        or is_modelfile_name(value)
    )


def expand(value: str, base_dir: Path) -> Path:
    """A path value as an absolute path: ``~`` expanded, relative to ``base_dir`` (the
    Modelfile's directory). Symlinks are kept: the builder resolves them once, on use."""
    return (base_dir / Path(value).expanduser()).absolute()


MODELFILE_NAME = "Modelfile"


def modelfile_in(path: Path) -> Path:
    """The Modelfile a build path names: a directory stands for the ``Modelfile`` in it
    (``mfc build DIR``, ``build_modelfile(DIR)``); a file is itself."""
    return path / MODELFILE_NAME if path.is_dir() else path
