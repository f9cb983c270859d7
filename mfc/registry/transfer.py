"""Blob downloads: parallel Range parts into a resumable partial file, hashed in the same pass.

How one blob arrives (``download``):

- **Parts.** A blob is cut into parts of ``part_size`` (64 MiB); a blob no larger than one
  part is a single GET. Up to ``max_connections`` parts (default 4; ``--max-connections``,
  ``$MFC_MAX_TRANSFER_STREAMS``) download at once, each with ``Range: bytes=a-b`` and
  written with ``pwrite`` at its offset into ``.mfc-partial/sha256-<hex>``
  (``mfc.store.partial``). Threads and one ``httpx.Client``: the work is socket reads,
  ``pwrite`` and sha256, all of which release the GIL, and the server runs the pull in a
  thread anyway, so an event loop would add nothing but a second client API.
- **One pass.** An in-order hasher thread follows a *frontier*: bytes before it are hashed.
  Each chunk a part writes is also offered to the hasher; chunks inside a window of
  ``buffer_bytes`` (64 MiB) past the frontier wait in memory and are hashed from there; a
  part racing further ahead is not kept — when the frontier reaches it, its bytes are read
  back from the partial file (just written, so from the page cache). Memory is bounded and
  the network bytes are hashed as they arrive; nothing re-reads the finished file to
  verify it.
- **Resume.** Completed parts are recorded (fdatasync, then an atomic JSON sidecar). A pull
  interrupted by an error, Ctrl-C or kill -9 downloads only the parts not recorded. hashlib
  state cannot be saved, so a resumed download re-hashes the recorded parts once from the
  file (the hasher reads them when its frontier gets there).
- **Stalls and retries.** No byte for ``stall_timeout`` seconds (30) is a read timeout;
  that part alone is retried from the byte it reached, with exponential backoff, up to
  ``attempts`` times; so are dropped connections, short bodies and 5xx/429 answers.
- **Verification.** The final digest must be the manifest's; otherwise the partial is
  deleted and the error names the layer and the registry. Only then is the file renamed to
  ``blobs/sha256-<hex>``.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import httpx

from mfc.digest import of_hash
from mfc.registry.client import (
    RegistryClient,
    RegistryError,
    RegistryStatusError,
    error_from,
    open_get,
    unreachable,
)
from mfc.store import partial
from mfc.store.blobio import Blob
from mfc.store.manifest import Descriptor

ENV_STREAMS = "MFC_MAX_TRANSFER_STREAMS"
_CHUNK = 1 << 20  # bytes gathered before a pwrite and an offer to the hasher
_READ = 8 << 20  # largest read-back by the hasher


@dataclass(frozen=True)
class TransferOptions:
    """Knobs of a download (defaults suit a fast link; tests use small parts)."""

    max_connections: int = 4
    part_size: int = 64 << 20
    stall_timeout: float = 30.0
    attempts: int = 6
    backoff: float = 0.5  # seconds before the first retry, doubled each time (max 8)
    buffer_bytes: int = 64 << 20  # out-of-order chunks kept for the hasher


def options_from(
    max_connections: int | None = None, environ: Mapping[str, str] | None = None
) -> TransferOptions:
    """``max_connections`` if given, else ``$MFC_MAX_TRANSFER_STREAMS``, else 4."""
    env = os.environ if environ is None else environ
    n = max_connections
    if n is None and env.get(ENV_STREAMS, "").strip():
        try:
            n = int(env[ENV_STREAMS])
        except ValueError:
            raise ValueError(
                f"${ENV_STREAMS} must be a whole number, not {env[ENV_STREAMS]!r}"
            ) from None
    if n is not None and n < 1:
        raise ValueError(f"the number of connections must be at least 1, not {n}")
    return TransferOptions(max_connections=n) if n is not None else TransferOptions()


class _Retry(Exception):
    """A transient failure of one part: retry it from where it got to."""


class _Cancelled(Exception):
    pass


@dataclass(frozen=True)
class _Part:
    index: int
    start: int
    end: int  # exclusive

    @property
    def length(self) -> int:
        return self.end - self.start


class _InOrderHasher:
    """Hashes the blob front to back while parts arrive in any order (see the module doc)."""

    def __init__(self, fd: int, parts: list[_Part], done: set[int], bound: int):
        self.fd, self.parts, self.bound = fd, parts, bound
        self.size = parts[-1].end if parts else 0
        self.part_size = parts[0].length if parts else 1
        # Bytes on disk from each part's start (pwrite happens before the count grows).
        self.written = [p.length if p.index in done else 0 for p in parts]
        self.buffer: dict[int, bytes] = {}
        self.frontier = 0
        self.hash = hashlib.sha256()
        self.cond = threading.Condition()
        self.stopped = False
        self.error: BaseException | None = None

    def offer(self, part: _Part, offset: int, data: bytes) -> None:
        """``data`` was just written at ``offset``; keep it if it is near the frontier."""
        with self.cond:
            self.written[part.index] = offset + len(data) - part.start
            if offset + len(data) <= self.frontier + self.bound:
                self.buffer[offset] = data
            self.cond.notify()

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify()

    def _available(self) -> int:
        """End of the bytes contiguous on disk from the frontier's part start."""
        k = min(self.frontier // self.part_size, len(self.parts) - 1)
        return self.parts[k].start + self.written[k]

    def run(self) -> None:
        try:
            while self.frontier < self.size:
                with self.cond:
                    while not self.stopped and self.frontier >= self._available():
                        self.cond.wait()
                    if self.stopped:
                        return
                    end = self._available()
                    chunk = self.buffer.pop(self.frontier, None)
                    if chunk is None:
                        later = [o for o in self.buffer if o > self.frontier]
                        n = min(end, min(later, default=end), self.frontier + _READ)
                        n -= self.frontier
                start = self.frontier
                if chunk is None:
                    chunk = _pread_exact(self.fd, n, start)
                self.hash.update(chunk)
                with self.cond:
                    self.frontier = start + len(chunk)
                    for o in [o for o in self.buffer if o < self.frontier]:
                        del self.buffer[o]  # superseded (a part restarted mid-chunk)
        except BaseException as exc:  # reported by the caller
            self.error = exc


def _pread_exact(fd: int, n: int, offset: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        data = os.pread(fd, n - len(out), offset + len(out))
        if not data:
            raise OSError(f"partial file shorter than expected at {offset + len(out)}")
        out += data
    return bytes(out)


def _parts(size: int, part_size: int) -> list[_Part]:
    return [
        _Part(i, start, min(start + part_size, size))
        for i, start in enumerate(range(0, size, part_size))
    ]


def download(
    client: RegistryClient,
    repository: str,
    desc: Descriptor,
    root: Path,
    blob_path: Path,
    *,
    options: TransferOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> Blob:
    """Download ``desc``'s blob into ``blob_path`` verified (see the module docstring).

    ``progress(completed)`` reports the bytes on disk so far (already recorded parts
    included). ``root`` is the store root (its ``.mfc-partial/`` holds the download)."""
    opts = options or TransferOptions()
    with partial.holding(root, desc.digest) as p:
        try:
            if blob_path.stat().st_size == desc.size:
                return Blob(desc.digest, desc.size)  # another pull finished it meanwhile
        except FileNotFoundError:
            pass
        parts = _parts(desc.size, max(1, opts.part_size))
        state = partial.read_state(p)
        done: set[int] = set()
        if (
            state is not None
            and state.get("size") == desc.size
            and state.get("part_size") == opts.part_size
            and p.data.is_file()
            and p.data.stat().st_size == desc.size
        ):
            done = {i for i in state.get("done", []) if isinstance(i, int) and 0 <= i < len(parts)}
        else:
            partial.discard(p)
        fd = os.open(p.data, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size != desc.size:
                os.ftruncate(fd, desc.size)
            digest = _run(client, repository, desc, fd, p, parts, done, opts, progress)
        finally:
            os.close(fd)
        if digest != desc.digest:
            partial.discard(p)
            raise RegistryError(
                f"layer {desc.digest} ({desc.media_type}) from the registry {client.host}"
                f" ({repository}) hashes to {digest}: the download was corrupted or the"
                " registry serves wrong content; the partial download was deleted, pull again"
            )
        partial.promote(p, blob_path)
        # Safe to drop while held: whoever locks the old or a new file next finds the blob.
        p.lock.unlink(missing_ok=True)
    return Blob(desc.digest, desc.size)


def _run(
    client: RegistryClient,
    repository: str,
    desc: Descriptor,
    fd: int,
    p: partial.Partial,
    parts: list[_Part],
    done: set[int],
    opts: TransferOptions,
    progress: Callable[[int], None] | None,
) -> str:
    hasher = _InOrderHasher(fd, parts, done, opts.buffer_bytes)
    cancel = threading.Event()
    lock = threading.Lock()
    completed = [sum(part.length for part in parts if part.index in done)]
    if progress is not None:
        progress(completed[0])

    def advanced(n: int) -> None:
        with lock:
            completed[0] += n
            value = completed[0]
        if progress is not None:
            progress(value)

    def record(part: _Part) -> None:
        os.fdatasync(fd)  # the recorded part must be on disk before the record says so
        with lock:
            done.add(part.index)
            state = {"size": desc.size, "part_size": opts.part_size, "done": sorted(done)}
            partial.write_state(p, state)

    hash_thread = threading.Thread(target=hasher.run, name="mfc-hash", daemon=True)
    hash_thread.start()
    todo = [part for part in parts if part.index not in done]
    try:
        if todo:
            workers = max(1, min(opts.max_connections, len(todo)))
            with ThreadPoolExecutor(workers, thread_name_prefix="mfc-pull") as pool:
                futures = [
                    pool.submit(
                        _fetch_part,
                        client,
                        repository,
                        desc,
                        fd,
                        part,
                        hasher,
                        opts,
                        cancel,
                        advanced,
                        record,
                    )
                    for part in todo
                ]
                finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
                failed = [f for f in finished if f.exception() is not None]
                if failed:
                    cancel.set()
                    wait(futures)
                    exc = failed[0].exception()
                    assert exc is not None
                    raise exc
        hash_thread.join()
    except BaseException:
        cancel.set()
        hasher.stop()
        hash_thread.join()
        raise
    if hasher.error is not None:
        raise hasher.error
    return of_hash(hasher.hash)


def _fetch_part(
    client: RegistryClient,
    repository: str,
    desc: Descriptor,
    fd: int,
    part: _Part,
    hasher: _InOrderHasher,
    opts: TransferOptions,
    cancel: threading.Event,
    advanced: Callable[[int], None],
    record: Callable[[_Part], None],
) -> None:
    """One part, retried on its own from the byte it reached."""
    got = [0]  # bytes of the part on disk, advanced by _stream_part as it writes
    failures = 0
    timeout = httpx.Timeout(opts.stall_timeout, connect=min(10.0, opts.stall_timeout))
    while got[0] < part.length:
        if cancel.is_set():
            raise _Cancelled()
        try:
            _stream_part(client, repository, desc, fd, part, got, hasher, timeout, cancel, advanced)
        except (_Retry, httpx.TransportError) as exc:
            failures += 1
            if failures >= opts.attempts:
                if isinstance(exc, httpx.TransportError):
                    raise unreachable(client.host, exc) from None
                raise RegistryError(str(exc)) from None
            if cancel.wait(min(opts.backoff * 2 ** (failures - 1), 8.0)):
                raise _Cancelled() from None
    record(part)


def _stream_part(
    client: RegistryClient,
    repository: str,
    desc: Descriptor,
    fd: int,
    part: _Part,
    got: list[int],
    hasher: _InOrderHasher,
    timeout: httpx.Timeout,
    cancel: threading.Event,
    advanced: Callable[[int], None],
) -> None:
    """GET the rest of ``part`` from byte ``got[0]``, advancing ``got[0]`` as bytes land."""
    first, last = part.start + got[0], part.end - 1
    whole = first == 0 and part.end == desc.size
    headers = {} if whole else {"Range": f"bytes={first}-{last}"}
    what = f"blob {desc.digest}"
    response = open_get(
        client, f"/v2/{repository}/blobs/{desc.digest}", headers=headers, timeout=timeout
    )
    try:
        status = response.status_code
        if status >= 500 or status == 429:
            raise _Retry(str(error_from(response, client.host, what)))
        if status not in (200, 206):
            raise error_from(response, client.host, what)
        if status == 200 and not whole:
            raise RegistryStatusError(
                f"{what}: the registry {client.host} ignored a Range request (answered 200),"
                " so it cannot serve a download in parts",
                status,
            )
        if status == 206 and not response.headers.get("Content-Range", "").startswith(
            f"bytes {first}-"
        ):
            raise _Retry(f"{what}: the registry {client.host} answered another byte range")
        pending = bytearray()
        offset = first

        def flush() -> None:
            nonlocal offset, pending
            if not pending:
                return
            data = bytes(pending)
            pending = bytearray()
            os.pwrite(fd, data, offset)
            hasher.offer(part, offset, data)
            offset += len(data)
            got[0] += len(data)
            advanced(len(data))

        try:
            for data in response.iter_bytes():
                if cancel.is_set():
                    raise _Cancelled()
                room = part.length - got[0] - len(pending)
                if len(data) > room:
                    pending += data[:room]
                    flush()
                    raise _Retry(f"{what}: the registry {client.host} sent more bytes than asked")
                pending += data
                if len(pending) >= _CHUNK:
                    flush()
        finally:
            flush()  # whatever arrived is on disk and counted, even when the stream broke
        if got[0] < part.length:
            raise _Retry(f"{what}: the connection to {client.host} ended early")
    finally:
        response.close()
