"""Blob downloads: parallel Range parts into a resumable partial file, hashed in the same pass.

How one blob arrives (``download``):

- **Parts.** A blob is cut into parts of ``part_size`` (64 MiB); a blob no larger than one
  part is a single GET. Up to ``max_connections`` parts (``--max-connections``,
  ``$MFC_MAX_TRANSFER_STREAMS``; by default 4, fewer for a registry on this machine, see
  ``default_connections``) download at once, each with ``Range: bytes=a-b`` and
  written with ``pwrite`` at its offset into ``.mfc-partial/sha256-<hex>``
  (``mfc.store.partial``). Threads: the work is socket reads, ``pwrite`` and sha256, all of
  which release the GIL, and the server runs the pull in a thread anyway.
- **No copies.** Each connection owns a ring of four reusable buffers (``_Ring``). A part's
  body is read from the socket straight into one (``mfc.registry.rawget``; httpx when that
  fast path declines: a proxy, a 401, an error), written from it, and the same memory is
  offered to the hasher. Profiling the httpx-only version showed the time in Python
  (generators, two copies in h11, two more here, a fresh ``bytes`` per chunk), not in the
  network, the disk or sha256.
- **One pass.** An in-order hasher thread follows a *frontier*: bytes before it are hashed.
  A chunk written exactly where the hasher's claimed bytes end is next in line: its buffer
  is lent to the hasher and given back once hashed — but only while the writer keeps a spare,
  so a connection never waits for the hasher. Every other chunk (a part racing ahead, or a
  hasher lagging behind) stays with its writer and is read back from the partial file when
  the frontier gets there (just written, so from the page cache). Memory is bounded by the
  rings; nothing re-reads the finished file to verify it.
- **Disk.** Writes are 1020 KiB, not 1 MiB (see ``_CHUNK``), and each is handed to a
  writeback thread that starts its disk write at once (``partial.start_writeback``), so the
  ``fdatasync`` before a part is recorded finds almost nothing left to do.
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

import contextlib
import hashlib
import http.client
import os
import queue
import threading
from collections import deque
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
    RegistryUnreachableError,
    error_from,
    is_loopback,
    open_get,
    unreachable,
)
from mfc.registry.rawget import RawBody, open_raw
from mfc.store import partial
from mfc.store.blobio import Blob
from mfc.store.manifest import Descriptor

ENV_STREAMS = "MFC_MAX_TRANSFER_STREAMS"
# One buffer: the bytes gathered before a pwrite and an offer to the hasher. A whole number of
# pages but not a power of two: writes of exactly 1 MiB at 1 MiB-aligned offsets let the page
# cache (ext4 with large folios, Linux 6.x) allocate 1 MiB folios, and on the 2-core VM this
# was measured on, filling those ran at 150-350 MB/s against 600-900 MB/s for 1020 KiB writes
# (same process, alternating; docs/registry.md, "Benchmark"). Elsewhere it costs nothing.
_CHUNK = (1 << 20) - 4096
_RING = 4  # buffers per connection (the hasher may hold all but one)
_READ = 8 << 20  # largest read-back by the hasher


@dataclass(frozen=True)
class TransferOptions:
    """Knobs of a download (defaults suit a fast link; tests use small parts)."""

    max_connections: int | None = None  # None: default_connections(the registry's host)
    part_size: int = 64 << 20
    stall_timeout: float = 30.0
    attempts: int = 6
    backoff: float = 0.5  # seconds before the first retry, doubled each time (max 8)
    fast_path: bool = True  # blob bodies via mfc.registry.rawget when it can serve them


def options_from(
    max_connections: int | None = None, environ: Mapping[str, str] | None = None
) -> TransferOptions:
    """``max_connections`` if given, else ``$MFC_MAX_TRANSFER_STREAMS``, else automatic
    (``default_connections``)."""
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


def default_connections(host: str, cpus: int | None = None) -> int:
    """Connections per blob when none are asked for: 4 for a registry elsewhere (parallel
    streams hide latency and per-connection limits), and for one on this machine (loopback)
    one per two CPUs, at most 4: it has no latency to hide and serves from the same CPUs,
    where each stream costs a core at full speed (measured on 2 cores: 1 stream 10-30 %
    faster than 4)."""
    if not is_loopback(host):
        return 4
    return max(1, min(4, (cpus if cpus is not None else os.cpu_count() or 1) // 2))


class _Retry(Exception):
    """A transient failure of one part: retry it from where it got to."""


class _Unreachable(_Retry):
    """A connection on the fast path failed (refused, reset, timed out): retried like the rest,
    reported as ``RegistryUnreachableError`` once the attempts are spent."""


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


class _Ring:
    """One connection's reusable buffers: a chunk is read into one, written from it and, when
    it is next in line for the hasher, lent to it without a copy. Reused, never reallocated:
    fresh memory costs page faults (and, in a VM, the host's), which showed in profiles."""

    def __init__(self, count: int, size: int):
        self.buffers = [memoryview(bytearray(size)) for _ in range(count)]
        self.lent = [False] * count
        self.current = 0


@dataclass(frozen=True)
class _Lease:
    ring: _Ring
    slot: int


class _InOrderHasher:
    """Hashes the blob front to back while parts arrive in any order (see the module doc).

    The bytes up to ``frontier`` are hashed; up to ``tail`` they are claimed (queued chunks,
    or a read-back in progress). A chunk written exactly at ``tail`` is next in line: the
    writer lends its buffer and the hasher gives it back once hashed. Any other chunk stays
    with its writer; the hasher reads it back from the partial file (just written, so from
    the page cache) when the frontier gets there. Queued chunks are contiguous from the
    frontier, so the hasher never waits on anything but the frontier's own part, and memory
    is bounded by the rings."""

    def __init__(self, fd: int, parts: list[_Part], done: set[int]):
        self.fd, self.parts = fd, parts
        self.size = parts[-1].end if parts else 0
        self.part_size = parts[0].length if parts else 1
        # Bytes on disk from each part's start (pwrite happens before the count grows).
        self.written = [p.length if p.index in done else 0 for p in parts]
        self.queue: deque[tuple[memoryview, _Lease]] = deque()
        self.frontier = 0
        self.tail = 0
        self.hash = hashlib.sha256()
        self.cond = threading.Condition()
        self.stopped = False
        self.error: BaseException | None = None
        self.read_back = 0  # bytes hashed from the file rather than from a lent buffer

    def offer(self, part: _Part, offset: int, view: memoryview, lease: _Lease) -> bool:
        """``view`` was just written at ``offset``; True if the hasher took the buffer.

        It takes it only if the writer keeps another free one: a writer never waits for the
        hasher (a hasher that falls behind reads those bytes back from the file instead)."""
        with self.cond:
            self.written[part.index] = offset + len(view) - part.start
            spare = sum(not lent for lent in lease.ring.lent) > 1
            taken = offset == self.tail and spare and not self.stopped
            if taken:
                lease.ring.lent[lease.slot] = True
                self.queue.append((view, lease))
                self.tail += len(view)
            self.cond.notify_all()
            return taken

    def next_buffer(self, ring: _Ring, cancel: threading.Event) -> memoryview:
        """The ring's next free buffer (``offer`` leaves one free, so this does not wait
        unless someone else lends the ring's buffers)."""
        with self.cond:
            while True:
                for step in range(len(ring.buffers)):
                    slot = (ring.current + step) % len(ring.buffers)
                    if not ring.lent[slot]:
                        ring.current = slot
                        return ring.buffers[slot]
                if self.stopped or cancel.is_set():
                    raise _Cancelled()
                self.cond.wait(0.5)

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()

    def _available(self) -> int:
        """End of the bytes contiguous on disk from the frontier's part start."""
        k = min(self.frontier // self.part_size, len(self.parts) - 1)
        return self.parts[k].start + self.written[k]

    def run(self) -> None:
        scratch = memoryview(bytearray(min(_READ, max(self.size, 1))))
        try:
            while self.frontier < self.size:
                lease: _Lease | None = None
                with self.cond:
                    while (
                        not self.stopped and not self.queue and self.frontier >= self._available()
                    ):
                        self.cond.wait()
                    if self.stopped:
                        return
                    if self.queue:
                        view, lease = self.queue.popleft()
                    else:
                        n = min(self._available() - self.frontier, len(scratch))
                        self.tail = self.frontier + n
                if lease is None:
                    view = _pread_exact(self.fd, scratch[:n], self.frontier)
                    self.read_back += n
                self.hash.update(view)
                with self.cond:
                    self.frontier += len(view)
                    if lease is not None:
                        lease.ring.lent[lease.slot] = False
                        self.cond.notify_all()
        except BaseException as exc:  # reported by the caller
            self.error = exc


class _Writeback:
    """Starts the disk writes of what the connections wrote, on a thread of its own
    (``partial.start_writeback``): submitting the I/O costs CPU that the connections'
    threads, measured, spent instead of reading the network. Ranges queue while it works;
    it stops with the transfer (the queue and thread go with the ``_Writeback``)."""

    def __init__(self, fd: int):
        self.fd = fd
        self.todo: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="mfc-writeback", daemon=True)
        self.thread.start()

    def start(self, offset: int, length: int) -> None:
        self.todo.put((offset, length))

    def close(self) -> None:
        self.todo.put(None)
        self.thread.join()

    def _run(self) -> None:
        while (item := self.todo.get()) is not None:
            with contextlib.suppress(OSError):
                partial.start_writeback(self.fd, *item)


def _pread_exact(fd: int, view: memoryview, offset: int) -> memoryview:
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if not n:
            raise OSError(f"partial file shorter than expected at {offset + got}")
        got += n
    return view


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
    hasher = _InOrderHasher(fd, parts, done)
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
    writeback = _Writeback(fd)
    todo = [part for part in parts if part.index not in done]
    try:
        if todo:
            wanted = opts.max_connections or default_connections(client.host)
            workers = max(1, min(wanted, len(todo)))
            chunk = max(1, min(_CHUNK, opts.part_size))
            rings: queue.SimpleQueue[_Ring] = queue.SimpleQueue()
            for _ in range(workers):
                rings.put(_Ring(_RING, chunk))
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
                        rings,
                        writeback,
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
                    hasher.stop()
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
    finally:
        writeback.close()  # before the caller closes the fd it works on
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
    rings: queue.SimpleQueue[_Ring],
    writeback: _Writeback,
    opts: TransferOptions,
    cancel: threading.Event,
    advanced: Callable[[int], None],
    record: Callable[[_Part], None],
) -> None:
    """One part, retried on its own from the byte it reached."""
    got = [0]  # bytes of the part on disk, advanced by _stream_part as it writes
    failures = 0
    ring = rings.get()
    try:
        while got[0] < part.length:
            if cancel.is_set():
                raise _Cancelled()
            try:
                _stream_part(
                    client,
                    repository,
                    desc,
                    fd,
                    part,
                    got,
                    hasher,
                    ring,
                    writeback,
                    opts,
                    cancel,
                    advanced,
                )
            except (_Retry, httpx.TransportError) as exc:
                failures += 1
                if failures >= opts.attempts:
                    if isinstance(exc, httpx.TransportError):
                        raise unreachable(client.host, exc) from None
                    if isinstance(exc, _Unreachable):
                        raise RegistryUnreachableError(str(exc)) from None
                    raise RegistryError(str(exc)) from None
                if cancel.wait(min(opts.backoff * 2 ** (failures - 1), 8.0)):
                    raise _Cancelled() from None
    finally:
        rings.put(ring)
    record(part)


class _HttpxBody:
    """The general path's body (any proxy, encoding or framing httpx handles), read like a
    ``RawBody``: copied from httpx's chunks into the caller's buffer."""

    def __init__(self, response: httpx.Response):
        self.response = response
        self.status = response.status_code
        self.headers = response.headers
        self._chunks = response.iter_bytes()
        self._left = memoryview(b"")

    def readinto(self, view: memoryview) -> int:
        if not self._left:
            data = next(self._chunks, b"")
            if not data:
                return 0
            self._left = memoryview(data)
        n = min(len(view), len(self._left))
        view[:n] = self._left[:n]
        self._left = self._left[n:]
        return n

    def close(self) -> None:
        self.response.close()


def _open_body(
    client: RegistryClient,
    path: str,
    headers: dict[str, str],
    timeout: httpx.Timeout,
    stall: float,
    fast: bool,
) -> tuple[RawBody | _HttpxBody, httpx.Response | None]:
    """The part's response: straight from the socket when ``rawget`` can serve it, else
    through httpx (also for what the fast path declines: a 401, an error, a proxy)."""
    if fast:
        try:
            body = open_raw(client, path, headers, stall)
        except (OSError, http.client.HTTPException) as exc:
            raise _Unreachable(f"cannot reach the registry {client.host}: {exc}") from None
        if body is not None:
            return body, None
    response = open_get(client, path, headers=headers, timeout=timeout)
    return _HttpxBody(response), response


def _stream_part(
    client: RegistryClient,
    repository: str,
    desc: Descriptor,
    fd: int,
    part: _Part,
    got: list[int],
    hasher: _InOrderHasher,
    ring: _Ring,
    writeback: _Writeback,
    opts: TransferOptions,
    cancel: threading.Event,
    advanced: Callable[[int], None],
) -> None:
    """GET the rest of ``part`` from byte ``got[0]``, advancing ``got[0]`` as bytes land.

    The body is read into one of the ring's buffers, written from it with ``pwrite`` and
    offered to the hasher from the same memory."""
    first, last = part.start + got[0], part.end - 1
    whole = first == 0 and part.end == desc.size
    headers = {} if whole else {"Range": f"bytes={first}-{last}"}
    what = f"blob {desc.digest}"
    timeout = httpx.Timeout(opts.stall_timeout, connect=min(10.0, opts.stall_timeout))
    body, response = _open_body(
        client,
        f"/v2/{repository}/blobs/{desc.digest}",
        headers,
        timeout,
        opts.stall_timeout,
        opts.fast_path,
    )
    try:
        status = body.status
        if response is not None and (status >= 500 or status == 429):
            raise _Retry(str(error_from(response, client.host, what)))
        if response is not None and status not in (200, 206):
            raise error_from(response, client.host, what)
        if status == 200 and not whole:
            raise RegistryStatusError(
                f"{what}: the registry {client.host} ignored a Range request (answered 200),"
                " so it cannot serve a download in parts",
                status,
            )
        if status == 206 and not (body.headers.get("Content-Range") or "").startswith(
            f"bytes {first}-"
        ):
            raise _Retry(f"{what}: the registry {client.host} answered another byte range")
        buf = hasher.next_buffer(ring, cancel)
        fill = 0

        def flush() -> None:
            nonlocal buf, fill
            if not fill:
                return
            offset = part.start + got[0]
            view = buf[:fill]
            written = 0
            while written < fill:
                written += os.pwrite(fd, view[written:], offset + written)
            writeback.start(offset, fill)
            lent = hasher.offer(part, offset, view, _Lease(ring, ring.current))
            got[0] += fill
            advanced(fill)
            fill = 0
            if lent:
                buf = hasher.next_buffer(ring, cancel)

        try:
            while True:
                if cancel.is_set():
                    raise _Cancelled()
                wanted = part.length - got[0] - fill
                if not wanted:
                    break
                try:
                    n = body.readinto(buf[fill : fill + min(len(buf) - fill, wanted)])
                except (OSError, http.client.HTTPException) as exc:
                    why = f"{what}: the connection to {client.host} failed: {exc}"
                    raise _Unreachable(why) from None
                if not n:
                    break
                fill += n
                if fill == len(buf) or fill == wanted:
                    flush()
        finally:
            flush()  # whatever arrived is on disk and counted, even when the stream broke
        if got[0] < part.length:
            raise _Retry(f"{what}: the connection to {client.host} ended early")
    finally:
        body.close()
