"""SHA-256 digests of volume files, remembered by file identity.

A download hashes each file while it sends it (dpd.tar_stream) and keeps the
digest here, keyed by (device, inode, size, mtime_ns, ctime_ns): a file
rewritten in place or replaced by a rename gets a new key, so a digest is
never reused for other bytes. A resumed download (a Range request) skips the
files before its first byte but still ends with the manifest of every file;
their digests come from here, or, on a cold cache (another process served the
first attempt, the server restarted, or the entries were evicted), from
reading those files again at hashing speed before the manifest's bytes go out
(docs/api.md gives the figures).

The cache is per process and bounded (DPD_CHECKSUM_CACHE_ENTRIES, oldest
entries dropped first); an entry is about 250 bytes.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable

from django.conf import settings

Key = tuple[int, int, int, int, int]

_lock = threading.Lock()
_digests: dict[Key, bytes] = {}
READ_SIZE = 1024 * 1024


def key_of(info: os.stat_result) -> Key:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def remembered(key: Key) -> bytes | None:
    return _digests.get(key)


def remembered_now() -> Callable[[Key], bytes | None]:
    """`remembered`, as a bound dict lookup for a loop over many files."""
    return _digests.get


def remember(key: Key, digest: bytes) -> None:
    limit = settings.DPD_CHECKSUM_CACHE_ENTRIES
    if limit <= 0:
        return
    with _lock:
        _digests[key] = digest
        while len(_digests) > limit:
            del _digests[next(iter(_digests))]


def remember_many(digests: dict[Key, bytes]) -> None:
    """`remember` for many files at once (one lock, one look at the settings)."""
    limit = settings.DPD_CHECKSUM_CACHE_ENTRIES
    if limit <= 0 or not digests:
        return
    with _lock:
        _digests.update(digests)
        while len(_digests) > limit:
            del _digests[next(iter(_digests))]


def forget_all() -> None:
    with _lock:
        _digests.clear()


def file_digest(fd: int, size: int) -> bytes:
    """The SHA-256 of the first `size` bytes of an open file (from its start)."""
    hasher = hashlib.sha256()
    buffer = bytearray(min(READ_SIZE, max(size, 1)))
    view = memoryview(buffer)
    done = 0
    while done < size:
        count = os.preadv(fd, [view[: min(len(buffer), size - done)]], done)
        if count <= 0:
            raise OSError(f"file shrank to {done} of {size} bytes")
        hasher.update(view[:count])
        done += count
    return hasher.digest()
