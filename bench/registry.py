"""Registry transfers: `mfc pull` / `mfc push` of a 1 GiB model against curl and skopeo.

One local registry (Debian's docker-registry, CNCF distribution, filesystem storage; started
by mfc.testing.registry in a temp dir) serves every contender in the same run. The model is a
stored model whose one layer is ``--gib`` GiB of random bytes (a transfer does not care what
the bytes mean) plus a small config; it is pushed once untimed so the pulls have a source.

Pull, each into a fresh destination, the order flipped every round:
- ``mfc pull --max-connections 4`` and ``--max-connections 1`` (the default for this
  loopback registry on a machine with 2 or 3 CPUs); both verify the sha256 while
  downloading (one pass) and make each recorded part and the blob durable (fdatasync);
- ``curl -s -o FILE .../blobs/<digest>``: the bytes only, no verification; then, timed
  apart, ``sha256sum FILE``: what a second verification pass costs (Ollama's way);
- ``skopeo copy docker://… dir:DIR`` (verifies digests as it copies). skopeo refuses the
  Ollama manifest (Docker v2 with non-image layer types), so it copies an OCI image
  manifest in the same repository whose one layer is the same blob; the refusal is printed;
- ``mfc pull`` of the model into a store that already holds it: the fixed cost of a pull
  (interpreter and imports, the manifest GET, writing the name), included in the rows above;
- with ``--baseline DIR`` (another checkout of mfc, e.g. ``git archive main | tar -x -C
  DIR``), ``mfc pull`` from that tree too, 4 connections: before/after in the same run.

Push, each to a fresh repository (so nothing is skipped or mounted):
- ``mfc push`` (HEAD, POST, PATCH in 32 MiB chunks, PUT ?digest=, the manifest);
- ``curl`` POST for an upload URL, then ``curl -T FILE`` PUT ``?digest=`` (monolithic).

Every figure is the median (and best) over ``--rounds`` rounds; ratios are paired per round
(same round, adjacent in time) and given as throughput ratios, > 1 meaning mfc is faster.
With ``--cold`` (needs root), ``sync; echo 3 > /proc/sys/vm/drop_caches`` runs before every
timed command, so the registry reads its blob from disk each time; otherwise the cache is
warm (the 1 GiB blob stays cached) and the run says so.

    python bench/registry.py [--gib 1.0] [--rounds 3] [--cold] [--dir DIR] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from mfc.digest import of_bytes
from mfc.store import Descriptor, Manifest, Store, canonical_json
from mfc.store import media_types as mt
from mfc.testing import registry as reg
from mfc.testing import registry_seed

MFC = [sys.executable, "-m", "mfc"]
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def make_model(store: Store, work: Path, gib: float) -> Descriptor:
    """``bench:latest``: one random layer of ``gib`` GiB (hard-linked in) and a config."""
    size = int(gib * (1 << 30))
    data = work / "layer.bin"
    with data.open("wb") as f:
        left = size
        while left:
            n = min(left, 64 << 20)
            f.write(os.urandom(n))
            left -= n
    layer = store.put_file(data, link="hard")
    config = store.put_bytes(canonical_json({"model_format": "gguf", "model_type": "bench"}))
    model = Descriptor(mt.MODEL, *layer)
    store.write_manifest("bench:latest", Manifest(Descriptor(mt.CONFIG, *config), (model,)))
    return model


def put_oci_manifest(url: str, repository: str, tag: str, layer: Descriptor) -> None:
    """An OCI image manifest over the same blob, which skopeo is willing to copy."""
    config = canonical_json(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
        }
    )
    config_desc = Descriptor(OCI_CONFIG, of_bytes(config), len(config))
    registry_seed.upload_blob(url, repository, config_desc.digest, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": config_desc.to_json(),
        "layers": [{"mediaType": OCI_LAYER, "digest": layer.digest, "size": layer.size}],
    }
    r = httpx.put(
        f"{url}/v2/{repository}/manifests/{tag}",
        content=canonical_json(manifest),
        headers={"Content-Type": mt.OCI_MANIFEST},
    )
    r.raise_for_status()


def run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=1.0, help="layer size in GiB (default 1)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cold", action="store_true", help="drop the page cache before each command")
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temp dir)")
    ap.add_argument(
        "--baseline", type=Path, default=None, help="another mfc tree to time `mfc pull` from"
    )
    args = ap.parse_args()
    if not reg.available():
        print(f"{reg.BINARY} is not installed: {reg.INSTALL_HINT}", file=sys.stderr)
        return 2
    if args.cold and not drop_caches():
        print("--cold: cannot write /proc/sys/vm/drop_caches (root needed)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="mfc-bench-registry-", dir=args.dir))
    registry = reg.start_registry(work)
    try:
        source_root = work / "source"
        source = Store(source_root)
        layer = make_model(source, work, args.gib)
        size = layer.size
        src_env = dict(os.environ, MFC_MODELS=str(source_root))
        host, url = registry.host, registry.url
        model = f"{host}/bench/model:v1"
        run([*MFC, "cp", "bench:latest", model], src_env)
        run([*MFC, "push", model], src_env)
        run([*MFC, "rm", model], src_env)  # later pushes must not mount from this repository
        put_oci_manifest(url, "bench/model", "oci", layer)
        skopeo = ["skopeo", "copy", "--insecure-policy", "--src-tls-verify=false", "--quiet"]
        refusal = subprocess.run(
            [*skopeo, f"docker://{model}", f"dir:{work / 'skopeo-ollama'}"],
            capture_output=True,
            text=True,
        )
        shutil.rmtree(work / "skopeo-ollama", ignore_errors=True)
        blob_url = f"{url}/v2/bench/model/blobs/{layer.digest}"
        layer_file = source.blob_path(layer.digest)
        pulled = work / "pulled"
        counter = [0]

        def fresh(path: Path) -> Path:
            shutil.rmtree(path, ignore_errors=True)
            if path.exists():
                path.unlink()
            return path

        def mfc_pull(connections: int, tree: Path | None = None) -> Callable[[], None]:
            def go() -> None:
                env = dict(os.environ, MFC_MODELS=str(pulled))
                if tree is not None:
                    env["PYTHONPATH"] = str(tree.resolve())
                run([*MFC, "pull", model, "--max-connections", str(connections)], env)

            return go

        present = work / "present"
        present_env = dict(os.environ, MFC_MODELS=str(present))
        run([*MFC, "pull", model], present_env)

        def mfc_present() -> None:
            run([*MFC, "pull", model], present_env)

        def curl_get() -> None:
            run(["curl", "-s", "-f", "-o", str(pulled), blob_url])

        def sha256sum() -> None:
            out = run(["sha256sum", str(pulled)]).stdout.split()[0]
            assert "sha256:" + out == layer.digest, "curl downloaded other bytes"

        def skopeo_copy() -> None:
            run([*skopeo, f"docker://{host}/bench/model:oci", f"dir:{pulled}"])

        def mfc_push() -> None:
            counter[0] += 1
            name = f"{host}/bench/mfc-{counter[0]}:v1"
            run([*MFC, "cp", "bench:latest", name], src_env)
            try:
                t0 = time.perf_counter()
                run([*MFC, "push", name], src_env)
                times["mfc push"].append(time.perf_counter() - t0)
            finally:
                run([*MFC, "rm", name], src_env)

        def curl_put() -> None:
            counter[0] += 1
            start = run(
                ["curl", "-s", "-f", "-D", "-", "-o", "/dev/null", "-X", "POST",
                 f"{url}/v2/bench/curl-{counter[0]}/blobs/uploads/"]
            ).stdout  # fmt: skip
            location = next(
                line.split(":", 1)[1].strip()
                for line in start.splitlines()
                if line.lower().startswith("location:")
            )
            target = httpx.URL(url).join(location).copy_merge_params({"digest": layer.digest})
            run(["curl", "-s", "-f", "-T", str(layer_file), str(target)])

        pulls: dict[str, Callable[[], None]] = {
            "mfc pull (4 conn.)": mfc_pull(4),
            "mfc pull (1 conn.)": mfc_pull(1),
            "curl GET": curl_get,
            "skopeo copy (OCI)": skopeo_copy,
            "mfc pull (no blob)": mfc_present,
        }
        if args.baseline is not None:
            pulls["baseline pull (4 conn.)"] = mfc_pull(4, args.baseline)
        times: dict[str, list[float]] = {
            k: [] for k in (*pulls, "sha256sum", "curl GET + sha256sum", "mfc push", "curl PUT")
        }
        for round_ in range(args.rounds):
            order = list(pulls) if round_ % 2 == 0 else list(reversed(pulls))
            for label in order:
                fresh(pulled)
                if args.cold:
                    drop_caches()
                t0 = time.perf_counter()
                pulls[label]()
                times[label].append(time.perf_counter() - t0)
                if label == "curl GET":  # the second pass, on the file curl just wrote
                    t0 = time.perf_counter()
                    sha256sum()
                    times["sha256sum"].append(time.perf_counter() - t0)
                    times["curl GET + sha256sum"].append(
                        times["curl GET"][-1] + times["sha256sum"][-1]
                    )
            fresh(pulled)
            for label in ("mfc push", "curl PUT") if round_ % 2 == 0 else ("curl PUT", "mfc push"):
                if args.cold:
                    drop_caches()
                if label == "curl PUT":
                    t0 = time.perf_counter()
                    curl_put()
                    times[label].append(time.perf_counter() - t0)
                else:
                    mfc_push()  # times only the push itself, not cp and rm
        load = os.getloadavg()
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)

    mb = size / 1e6
    cache = "cold (caches dropped before each command)" if args.cold else "warm page cache"
    print(f"blob: {size / (1 << 30):.2f} GiB random, {args.rounds} rounds alternating, {cache}")
    print(
        f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs"
    )
    print(f"{'':<24} {'median':>9} {'best':>9} {'MB/s (median)':>14}")
    for label, ts in times.items():
        med = statistics.median(ts)
        print(f"{label:<24} {med:8.2f}s {min(ts):8.2f}s {mb / med:14.0f}")

    def paired(a: str, b: str) -> str:
        """Throughput of ``a`` / throughput of ``b``, per round: b's time / a's time."""
        ratios = [tb / ta for ta, tb in zip(times[a], times[b], strict=True)]
        listed = " ".join(f"{r:.2f}" for r in ratios)
        return f"{statistics.median(ratios):.2f}× (rounds: {listed})"

    print("paired throughput ratios (> 1: mfc faster)")
    for a, b in (
        ("mfc pull (4 conn.)", "curl GET"),
        ("mfc pull (4 conn.)", "curl GET + sha256sum"),
        ("mfc pull (4 conn.)", "skopeo copy (OCI)"),
        ("mfc pull (1 conn.)", "curl GET"),
        ("mfc push", "curl PUT"),
        *([("mfc pull (4 conn.)", "baseline pull (4 conn.)")] if args.baseline else []),
        *([("baseline pull (4 conn.)", "curl GET")] if args.baseline else []),
    ):
        print(f"  {a:<23} vs {b:<23} {paired(a, b)}")
    status = "refused" if refusal.returncode else "copied (unexpectedly)"
    text = (refusal.stderr.strip().splitlines() or [""])[-1]
    print(f"skopeo copy of the Ollama manifest: {status}: {text}")
    print(json.dumps({k: [round(t, 3) for t in v] for k, v in times.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
