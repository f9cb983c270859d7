"""mfc, the Modelfile compiler: Modelfile -> content-addressed model image -> llama.cpp."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mfc")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
