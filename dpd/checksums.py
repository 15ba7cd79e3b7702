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

Digests of files of at least SHARED_MIN_BYTES are also kept in the database
(dpd.models.FileDigest), so that a resume landing on another gunicorn worker
or pod does not read again the gigabytes its range skipped: a download on the
Python path looks them up before it starts (`recall_shared`) and records the
ones it learned when it ends (`share`). The database's key leaves out the
device number, which differs between the hosts that mount one volume, and
holds the path under the volume instead. Smaller files are cheaper to hash
again than to look up. The database being unavailable only means hashing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import DatabaseError, connection

if TYPE_CHECKING:
    from dpd.tar_layout import Member

Key = tuple[int, int, int, int, int]

logger = logging.getLogger("dpd.download")

_lock = threading.Lock()
_digests: dict[Key, bytes] = {}
READ_SIZE = 1024 * 1024
# Hashing 1 MiB (~0.7 ms) costs about what a row costs to look up or write.
SHARED_MIN_BYTES = 1024 * 1024
_SHARED_BATCH = 1000
# The keys this process knows the database holds (looked up or written), so
# that a file is written once, not at every download of it; oldest first.
_shared: dict[Key, None] = {}
SHARED_KEYS_KEPT = 100_000


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
    """Forget every digest this process holds (the database keeps its own)."""
    with _lock:
        _digests.clear()
        _shared.clear()


def shared_identity(root: bytes, member: Member) -> bytes:
    """The database's key of a file: its path under the volume `root` and
    its inode, size, mtime and ctime (not the device: see the module)."""
    info = member.info
    relative = member.path[len(root) + 1 :]
    numbers = b"%d %d %d %d" % (info.st_ino, member.size, info.st_mtime_ns, info.st_ctime_ns)
    return hashlib.sha256(b"dpd-file-digest-1\0" + relative + b"\0" + numbers).digest()


def recall_shared(root: bytes, files: Iterable[Member]) -> dict[Member, bytes]:
    """The database's digests of the large `files` this process does not
    know yet (also remembered here)."""
    from dpd.models import FileDigest

    wanted = {
        shared_identity(root, member): member
        for member in files
        if member.size >= SHARED_MIN_BYTES and member.identity not in _digests
    }
    if not wanted:
        return {}
    found: dict[Member, bytes] = {}
    try:
        identities = list(wanted)
        for start in range(0, len(identities), _SHARED_BATCH):
            rows = FileDigest.objects.filter(
                identity__in=identities[start : start + _SHARED_BATCH]
            ).values_list("identity", "sha256")
            found.update((wanted[bytes(identity)], bytes(digest)) for identity, digest in rows)
    except DatabaseError as exc:
        logger.warning("file digests not read from the database (hashing instead): %s", exc)
    finally:
        _release_connection()
    by_key = {member.identity: digest for member, digest in found.items()}
    remember_many(by_key)
    _mark_shared(by_key)
    return found


def share(root: bytes, digests: dict[Member, bytes]) -> None:
    """Record in the database the digests of the large files among `digests`
    (what one download learned) that this process has not recorded or found
    there before."""
    from dpd.models import FileDigest

    rows, keys = [], []
    for member, digest in digests.items():
        key = member.identity
        if member.size >= SHARED_MIN_BYTES and key not in _shared:
            rows.append(FileDigest(identity=shared_identity(root, member), sha256=digest))
            keys.append(key)
    if not rows:
        return
    try:
        FileDigest.objects.bulk_create(rows, batch_size=_SHARED_BATCH, ignore_conflicts=True)
    except DatabaseError as exc:
        logger.warning("file digests not recorded in the database: %s", exc)
        return
    finally:
        _release_connection()
    _mark_shared(keys)


def _release_connection() -> None:
    """A download's stream holds no database connection (it may last hours,
    and dpd.api.product_views closed the request's before it began): the one
    these lookups opened goes at once. Not inside a transaction (a test's)."""
    if not connection.in_atomic_block:
        connection.close()


def _mark_shared(keys: Iterable[Key]) -> None:
    with _lock:
        _shared.update(dict.fromkeys(keys))
        while len(_shared) > SHARED_KEYS_KEPT:
            del _shared[next(iter(_shared))]


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
