"""The registry fixture itself: a real distribution registry answering the OCI API."""

from __future__ import annotations

import hashlib

import httpx

from mfc.testing import registry as reg


def test_registry_answers_the_distribution_api(registry: reg.Registry) -> None:
    r = httpx.get(registry.url + "/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    # A monolithic blob upload round trip: POST, PUT ?digest=, GET.
    data = b"hello registry"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = httpx.post(registry.url + "/v2/t/blobs/uploads/")
    assert start.status_code == 202
    location = httpx.URL(registry.url).join(start.headers["Location"])
    # The upload URL carries its own state in the query: add the digest to it (a client that
    # replaces the query loses the upload, 404 BLOB_UPLOAD_UNKNOWN).
    put = httpx.put(location.copy_merge_params({"digest": digest}), content=data)
    assert put.status_code == 201
    assert httpx.get(f"{registry.url}/v2/t/blobs/{digest}").content == data
