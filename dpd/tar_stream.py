"""The bytes of an archive laid out by dpd.tar_layout, from any offset.

`stream_archive(layout, start, stop)` sends bytes [start, stop): it starts at
the member holding `start` (found by bisection, nothing before it is read),
reads a file from the position inside it, and stops at `stop`. Memory stays
flat: small members are gathered into chunks of about STREAM_CHUNK_SIZE, a
large file goes out one chunk at a time, never a temporary archive.

The race rules of a stream that has started: each file is opened without
following symlinks (O_NOFOLLOW) and must still be the file the walk saw
(inode, size, mtime), or the stream is cut (DownloadInterrupted, logged),
never sent with other bytes than its ETag and length promise; a file that
appeared after the walk is not in the archive.

A whole download of many small files comes from a GNU tar process instead
(dpd.tar_process: the same bytes, each header checked against the walk).

The manifest member lists the SHA-256 of every regular file. A file sent
whole is hashed as it goes, in a helper thread a few chunks behind the socket
(hashlib releases the GIL: a second core hashes while the first sends); the
digests of files a resumed range skipped come from dpd.checksums (large
files' from the database when another process learned them) or are computed
in another helper thread while the range streams, and the manifest's bytes
wait for them. Nothing is hashed when the range ends
before the manifest.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from django.conf import settings

from dpd import checksums, tar_process
from dpd.download import DownloadInterrupted
from dpd.tar_layout import BLOCK, REG, ArchiveLayout, Member, escape_manifest_name

logger = logging.getLogger("dpd.download")

EMPTY_DIGEST = hashlib.sha256(b"").digest()
HASH_AHEAD = 3
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def stream_archive(
    layout: ArchiveLayout,
    start: int = 0,
    stop: int | None = None,
    *,
    chunk_size: int | None = None,
    early: tar_process.EarlyTar | None = None,
) -> ArchiveStream:
    """Bytes [start, stop) of the archive in chunks of about `chunk_size`;
    a whole archive of many small files comes from tar (dpd.tar_process),
    the one `early` started during the walk if there is one."""
    stop = layout.size if stop is None else stop
    tar = None
    if start == 0 and stop == layout.size and tar_process.suits(layout):
        tar = early.take(layout) if early is not None else None
        pieces = _from_tar(layout, tar)
    else:
        if early is not None:  # not tar's after all: stop it before the first byte
            early.close()
        chunk_size = chunk_size or settings.STREAM_CHUNK_SIZE
        pieces = _pieces(layout, start, stop, chunk_size)
    return ArchiveStream(layout, stop - start, pieces, tar)


class ArchiveStream:
    """The pieces, with an error that cuts the stream logged once. A class
    rather than a generator: closing it stops `tar`, begun during the walk,
    even when the response never started (a generator that never ran would
    not run its clean-up)."""

    def __init__(
        self,
        layout: ArchiveLayout,
        size: int,
        pieces: Generator[bytes, None, None],
        tar: tar_process.TarProcess | None = None,
    ) -> None:
        self.layout = layout
        self.size = size
        self.pieces = pieces
        self.tar = tar

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        name = self.layout.filename
        try:
            for piece in self.pieces:
                sent += len(piece)
                yield piece
        except OSError as exc:
            logger.error("download of %s cut after %d bytes: %s", name, sent, exc, exc_info=False)
            raise DownloadInterrupted(str(exc)) from exc
        finally:
            self.close()
        if sent != self.size:  # cannot happen: the layout and the stream share the walk
            logger.error("download of %s: %d bytes sent of %d", name, sent, self.size)
            raise DownloadInterrupted("the stream and its layout disagree")

    def close(self) -> None:
        self.pieces.close()
        if self.tar is not None:
            self.tar.close()


class _Hashing:
    """One download's helper threads, started when needed. SHA-256 in hashlib
    releases the GIL, so hashing a chunk overlaps the socket write of the one
    before it (a second core does the hashing), and the files a resumed range
    skipped are hashed while the range streams, not when the manifest is due."""

    def __init__(self) -> None:
        self.pools: dict[str, ThreadPoolExecutor] = {}

    def pool(self, purpose: str) -> ThreadPoolExecutor:
        if purpose not in self.pools:
            self.pools[purpose] = ThreadPoolExecutor(1, thread_name_prefix=f"dpd-{purpose}")
        return self.pools[purpose]

    def close(self) -> None:
        for pool in self.pools.values():
            pool.shutdown(wait=False, cancel_futures=True)


def _pieces(layout: ArchiveLayout, start: int, stop: int, chunk_size: int) -> Iterator[bytes]:
    hashing = _Hashing()
    wants_manifest = stop > layout.manifest_data_offset and layout.manifest_size > 0
    # Large files' digests another process learned (dpd.checksums).
    digests = checksums.recall_shared(layout.root, layout.files) if wants_manifest else {}
    try:
        yield from _python_pieces(layout, start, stop, chunk_size, hashing, digests, wants_manifest)
    finally:
        hashing.close()
        # What this download learned, even if it was cut: a resume may come
        # to another process.
        checksums.share(layout.root, digests)


def _python_pieces(
    layout: ArchiveLayout,
    start: int,
    stop: int,
    chunk_size: int,
    hashing: _Hashing,
    digests: dict[Member, bytes],
    wants_manifest: bool,
) -> Iterator[bytes]:
    """The bytes; `digests` holds those known before and gets those learned
    (`wants_manifest`: the range reaches the manifest's text)."""
    skipped: dict[Member, Future] = {}
    if wants_manifest and start:
        for member in layout.files:
            if member.data_offset >= start:
                break
            if (
                member.size
                and member not in digests
                and checksums.remembered(member.identity) is None
            ):
                skipped[member] = hashing.pool("skipped").submit(_digest_of, member)
    pending = bytearray()
    first = max(layout.member_at(start), 0)
    for member in layout.members[first:]:
        at = member.offset
        if at >= stop:
            break
        size = member.size
        if start <= at and at + member.header_size + size + BLOCK <= stop:
            # The whole member: the common case, kept cheap.
            pending += member.header()
            if size and size <= chunk_size:
                pending += _small_file(member, digests, wants_manifest)
                pending += bytes(-size % BLOCK)
            elif size:
                for data in _read(member, 0, size, chunk_size, digests, wants_manifest, hashing):
                    if pending:
                        yield bytes(pending)
                        pending.clear()
                    yield data
                pending += bytes(-size % BLOCK)
        else:
            data_at = at + member.header_size
            if start < data_at:
                pending += member.header()[max(0, start - at) : stop - at]
            if member.kind == REG and size and stop > data_at:
                low = max(0, start - data_at)
                high = min(size, stop - data_at)
                if high > low:
                    for data in _read(
                        member, low, high, chunk_size, digests, wants_manifest, hashing
                    ):
                        if pending:
                            yield bytes(pending)
                            pending.clear()
                        yield data
                padding_at = data_at + size
                padding = -size % BLOCK
                if stop > padding_at and padding:
                    low = max(0, start - padding_at)
                    pending += bytes(min(padding, stop - padding_at) - low)
        if len(pending) >= chunk_size:
            yield bytes(pending)
            pending.clear()
    manifest = layout.manifest
    if start < manifest.end and stop > manifest.offset:
        at = manifest.offset
        if start < manifest.data_offset:
            pending += manifest.header()[max(0, start - at) : stop - at]
        if wants_manifest:
            for member, future in skipped.items():
                digests.setdefault(member, future.result())
            body = _manifest_bytes(layout, digests)
            body += bytes(-len(body) % BLOCK)
            data_at = manifest.data_offset
            pending += body[max(0, start - data_at) : stop - data_at]
    end_at = layout.end_offset
    if stop > end_at:
        pending += bytes(stop - max(start, end_at))
    if pending:
        yield bytes(pending)


def _from_tar(layout: ArchiveLayout, tar: tar_process.TarProcess | None) -> Iterator[bytes]:
    """The whole archive: the members from a tar process (dpd.tar_process),
    then the manifest of the digests of the bytes it sent, and the end."""
    digests: dict[Member, bytes] = {}
    yield from tar_process.tar_members(layout, digests, tar or tar_process.started(layout))
    yield _tail(layout, digests)


def _tail(layout: ArchiveLayout, digests: dict[Member, bytes]) -> bytes:
    """The archive's bytes from the manifest member to its end."""
    manifest = layout.manifest
    body = _manifest_bytes(layout, digests) if layout.manifest_size else b""
    body += bytes(-len(body) % BLOCK)
    return manifest.header() + body + bytes(layout.size - layout.end_offset)


def _small_file(member: Member, digests: dict[Member, bytes], wants_manifest: bool) -> bytes:
    """A whole file of at most a chunk, in one read (most members of a
    product of many small files: no generator, no seek)."""
    fd = _open_unchanged(member)
    try:
        size = member.size
        data = os.read(fd, size)
        while len(data) < size:
            more = os.read(fd, size - len(data))
            if not more:
                raise OSError(f"{os.fsdecode(member.name)}: file shrank while it was sent")
            data += more
    finally:
        os.close(fd)
    if wants_manifest:
        identity = member.identity
        digest = checksums.remembered(identity)
        if digest is None:
            digest = hashlib.sha256(data).digest()
            checksums.remember(identity, digest)
        digests[member] = digest
    return data


def _read(
    member: Member,
    low: int,
    high: int,
    chunk_size: int,
    digests: dict[Member, bytes],
    wants_manifest: bool,
    hashing: _Hashing,
) -> Iterator[bytes]:
    """Bytes [low, high) of a file, checked to be the file the walk saw; its
    digest goes to `digests` when the whole file passes through here."""
    shown = os.fsdecode(member.name)
    fd = _open_unchanged(member)
    try:
        key = member.identity
        hasher = None
        if wants_manifest:
            known = digests.get(member) or checksums.remembered(key)
            if known is not None:
                digests[member] = known
            elif low == 0:
                hasher = hashlib.sha256()
        if low:
            os.lseek(fd, low, os.SEEK_SET)
        remaining = high - low
        hashed: deque[Future] = deque()
        while remaining:
            data = os.read(fd, min(chunk_size, remaining))
            if not data:
                raise OSError(f"{shown}: file shrank while it was sent")
            remaining -= len(data)
            if hasher is not None:
                # In order (one helper thread); HASH_AHEAD chunks queued at most,
                # so the helper never waits for the socket and memory stays flat.
                if len(hashed) >= HASH_AHEAD:
                    hashed.popleft().result()
                hashed.append(hashing.pool("hash").submit(hasher.update, data))
            yield data
        for future in hashed:
            future.result()
        if hasher is not None and high == member.size:
            digest = hasher.digest()
            digests[member] = digest
            checksums.remember(key, digest)
    finally:
        os.close(fd)


def _open_unchanged(member: Member) -> int:
    """The member's file opened (no symlink followed), checked to be the file
    the walk saw; errors name the file. The caller closes it."""
    try:
        fd = os.open(member.path, OPEN_FLAGS)
    except OSError as exc:
        raise OSError(f"{os.fsdecode(member.name)}: {exc.strerror or exc}") from exc
    now, then = os.fstat(fd), member.info
    if (
        now.st_mtime_ns != then.st_mtime_ns
        or now.st_size != then.st_size
        or now.st_ino != then.st_ino
    ):
        os.close(fd)
        name = os.fsdecode(member.name)
        raise OSError(f"{name}: the file changed since the download began")
    return fd


def _manifest_bytes(layout: ArchiveLayout, digests: dict[Member, bytes]) -> bytes:
    """The manifest's text: a `sha256sum` line per regular file, in archive order,
    names relative to the manifest's folder."""
    folder = layout.manifest_folder
    skip = len(folder) + 1 if folder else 0
    files = layout.files
    hexes = [(digests.get(m) or _digest_of(m)).hex().encode() for m in files]
    names = [m.name[skip:] for m in files]
    if any(b"\\" in name or b"\n" in name for name in names):
        lines = []
        for hex_digest, relative in zip(hexes, names, strict=True):
            name, prefix = escape_manifest_name(relative)
            lines.append(b"%b%b  %b\n" % (prefix, hex_digest, name))
        body = b"".join(lines)
    else:
        body = b"".join([b"%b  %b\n" % pair for pair in zip(hexes, names, strict=True)])
    if len(body) != layout.manifest_size:  # cannot happen: same names, same rule
        raise OSError("the manifest is not the length announced")
    return body


def _digest_of(member: Member) -> bytes:
    """A file's digest when the stream did not hash it (it was before the range)."""
    if member.size == 0:
        return EMPTY_DIGEST
    key = member.identity
    known = checksums.remembered(key)
    if known is not None:
        return known
    fd = _open_unchanged(member)
    try:
        digest = checksums.file_digest(fd, member.size)
    finally:
        os.close(fd)
    checksums.remember(key, digest)
    return digest
