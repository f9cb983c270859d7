"""The one table of media types mfc reads and writes.

Layer types are Ollama's (``application/vnd.ollama.image.*``) so an mfc store
and an Ollama store are interchangeable; the manifest and config types are the
Docker v2 ones Ollama uses; the OCI types are for image layouts (save/load,
``registry_cache/``).
"""

from __future__ import annotations

_OLLAMA = "application/vnd.ollama.image."

MODEL = _OLLAMA + "model"
ADAPTER = _OLLAMA + "adapter"
PROJECTOR = _OLLAMA + "projector"
TEMPLATE = _OLLAMA + "template"
SYSTEM = _OLLAMA + "system"
PARAMS = _OLLAMA + "params"  # a JSON object: parameter name -> value (list for repeatable)
MESSAGES = _OLLAMA + "messages"  # a JSON array of {"role", "content"}
LICENSE = _OLLAMA + "license"

CONFIG = "application/vnd.docker.container.image.v1+json"
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_LAYOUT_FILE = "oci-layout"
OCI_LAYOUT_VERSION = "1.0.0"
OCI_REF_NAME = "org.opencontainers.image.ref.name"
OCI_TITLE = "org.opencontainers.image.title"

# CNCF ModelPack (github.com/modelpack/model-spec, specs-go/v1): an OCI manifest with this
# artifactType and config; how mfc's layers map onto these is mfc.registry.modelpack's table.
_CNCF = "application/vnd.cncf.model."
MODELPACK_ARTIFACT = _CNCF + "manifest.v1+json"
MODELPACK_CONFIG = _CNCF + "config.v1+json"
MODELPACK_WEIGHT = _CNCF + "weight.v1.raw"
MODELPACK_WEIGHT_CONFIG = _CNCF + "weight.config.v1.raw"
MODELPACK_DOC = _CNCF + "doc.v1.raw"
MODELPACK_FILEPATH = "org.cncf.model.filepath"
# Docker Model Runner's own types, read on pull (its `--format cncf` writes ModelPack's).
DOCKER_AI_CONFIG = "application/vnd.docker.ai.model.config.v0.1+json"
DOCKER_AI_GGUF = "application/vnd.docker.ai.gguf.v3"
DOCKER_AI_LICENSE = "application/vnd.docker.ai.license"

# The fixed order layers appear in a manifest the builder writes (several
# adapters and licenses keep their own order within their group).
LAYER_ORDER: tuple[str, ...] = (
    MODEL,
    PROJECTOR,
    ADAPTER,
    TEMPLATE,
    SYSTEM,
    PARAMS,
    MESSAGES,
    LICENSE,
)


def layer_rank(media_type: str) -> int:
    """Sort key putting layers in LAYER_ORDER; unknown types (e.g. ones a newer
    Ollama writes) go last, keeping their relative order under a stable sort."""
    try:
        return LAYER_ORDER.index(media_type)
    except ValueError:
        return len(LAYER_ORDER)
