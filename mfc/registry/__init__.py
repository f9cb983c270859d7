"""OCI distribution: push and pull models to and from any registry (docs/registry.md).

Sits between the builder/server and the store: a pull writes verified blobs and a manifest
into the store; a push reads them. Nothing here imports the builder, runtime or server.
"""
