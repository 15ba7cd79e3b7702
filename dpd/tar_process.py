"""GNU tar as the byte source of a whole download of many small files.

Python pays ~8 us a file to open, fstat, read, close and frame a member on
top of the walk's lstat; GNU tar does the same system calls in C, in another
process, so on a second core. For a whole archive (no Range) of at least
DPD_TAR_PROCESS_MIN_FILES regular files averaging under TAR_MAX_MEAN_BYTES,
dpd.tar_stream lets `tar` produce the bytes of every member and this module
checks them against the walk before any of them is sent:

- tar gets exactly the walk's list, in the walk's order (`--files-from`,
  `--no-recursion`), so it sends no file the walk did not see;
- every header tar writes must be byte for byte the header dpd.tar_layout
  predicts from the walk's lstat (name, mode, owner, size, mtime, type, link),
  or the stream is cut before that header: a file grown, shrunk, touched,
  chmod-ed, gone or turned into a symlink since the walk is caught as on the
  Python path. One difference: a header holds no inode, so a file replaced
  (renamed over) by another of the same size, mtime, mode and owner is sent
  as tar reads it, where the Python path refuses the new inode;
- tar must exit 0: it reports a file that changed or shrank while it read it
  (it pads a shrunk file with zeros), and such an archive is cut before its
  end-of-archive blocks, so the client sees an incomplete transfer.

The data of each regular file is hashed from tar's output for the manifest,
which Python appends with the end blocks (tar's own end is discarded). The
headers are GNU tar's (tests/test_tar_process.py compares both sources on
awkward trees), so a download begun here resumes with a Range on the Python
path, in any process.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from typing import IO

from django.conf import settings

from dpd import checksums
from dpd.tar_layout import ArchiveLayout, Member

logger = logging.getLogger("dpd.download")

# Above this mean file size the per-file cost no longer matters and the
# Python path is faster (no pipe in between; hashing on a helper thread).
TAR_MAX_MEAN_BYTES = 1024 * 1024
PIPE_BYTES = 1024 * 1024
READ_BYTES = 1024 * 1024
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


@functools.cache
def gnu_tar() -> str | None:
    """The path of GNU tar, or None (another tar writes other headers)."""
    path = shutil.which("tar")
    if path is None:
        return None
    try:
        version = subprocess.run(
            [path, "--version"], capture_output=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return path if version.startswith(b"tar (GNU tar) ") else None


def suits(layout: ArchiveLayout) -> bool:
    """Whether a whole download of this layout should come from tar."""
    least = settings.DPD_TAR_PROCESS_MIN_FILES
    files = layout.files
    if least <= 0 or len(files) < least:
        return False
    data = layout.manifest.offset  # headers included: a bound that is enough here
    return data < TAR_MAX_MEAN_BYTES * len(files) and gnu_tar() is not None


def tar_members(layout: ArchiveLayout, digests: dict[Member, bytes]) -> Iterator[bytes]:
    """Bytes [0, manifest offset) of the archive, from a tar process, each
    member checked against the walk; the digests of regular files go to
    `digests`. An OSError cuts the stream (dpd.tar_stream logs it)."""
    # tar's messages go to a file, never to a pipe that tar could fill and block on.
    with tempfile.TemporaryFile() as errors:
        process = _start(layout, errors)
        output = process.stdout
        read = functools.partial(os.read, output.fileno(), READ_BYTES)
        try:
            try:
                yield from _checked(layout, read, digests)
            except OSError as exc:
                if process.poll() is None:  # a changed member: tar is fine, we stop it
                    raise
                raise OSError(f"{exc} (tar: {_said(errors)})") from exc
            while read():  # tar's end blocks: closing the pipe first would be EPIPE
                pass
            if process.wait() != 0:
                raise OSError(f"tar exited with status {process.returncode}: {_said(errors)}")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            output.close()


def _said(errors: IO[bytes]) -> str:
    errors.seek(0)
    return errors.read(2000).decode("utf-8", "replace").strip()


def _start(layout: ArchiveLayout, errors: IO[bytes]) -> subprocess.Popen:
    """tar, reading the walk's names (NUL-ended, in its order) from a file."""
    names = [member.name for member in layout.members]
    names = [name[:-1] if name.endswith(b"/") else name for name in names]
    argv = [
        gnu_tar(),
        "--create",
        "--file=-",
        "--format=gnu",
        "--no-recursion",
        "--hard-dereference",  # a hard link is a second full copy, as the walk counts it
        "--null",
        "--verbatim-files-from",
        "--no-unquote",
        "--directory",  # before the names: tar's -C is positional
        os.fsdecode(layout.root),
        "--files-from=-",
    ]
    with tempfile.TemporaryFile() as listing:
        listing.write(b"\0".join(names) + b"\0")
        listing.seek(0)
        process = subprocess.Popen(
            argv,
            stdin=listing,
            stdout=subprocess.PIPE,
            stderr=errors,
            env={"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
    with contextlib.suppress(OSError):  # a smaller pipe only means more reads
        fcntl.fcntl(process.stdout.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
    return process


def _checked(
    layout: ArchiveLayout, read: Callable[[], bytes], digests: dict[Member, bytes]
) -> Iterator[bytes]:
    """Read tar's output, check each header, hash each file, and yield the
    checked bytes in pieces of about STREAM_CHUNK_SIZE."""
    members = layout.members
    count = len(members)
    data_end = layout.manifest.offset
    chunk_size = settings.STREAM_CHUNK_SIZE
    sha256 = hashlib.sha256
    remembered = checksums.remembered_now()
    learned: dict = {}
    buffer = bytearray()
    base = 0  # the archive offset of buffer[0]
    index = 0  # the member being checked
    checked_header = False
    hasher = None  # a file whose data spans reads
    changed: Member | None = None  # a member whose header is not the walk's
    hashed_to = 0
    try:
        while base + len(buffer) < data_end:
            data = read()
            if not data:
                shown = os.fsdecode(members[index].name) if index < count else "the end"
                raise OSError(f"{shown}: tar ended before the archive did")
            buffer += data
            have = base + len(buffer)
            with memoryview(buffer) as view:
                while index < count:
                    member = members[index]
                    at = member.offset - base
                    if not checked_header:
                        size_of_header = member.header_size
                        if member.offset + size_of_header > have:
                            break
                        if not member.header_matches(buffer, at):
                            changed = member
                            break
                        checked_header = True
                        hashed_to = member.offset + size_of_header
                    size = member.size
                    if size:
                        data_at = member.offset + member.header_size
                        if hasher is None and data_at + size <= have:
                            info = member.info
                            key = (info.st_dev, info.st_ino, size, info.st_mtime_ns)
                            key += (info.st_ctime_ns,)  # Member.identity, inline
                            digest = remembered(key)
                            if digest is None:
                                at = data_at - base
                                digest = sha256(view[at : at + size]).digest()
                                learned[key] = digest
                            digests[member] = digest
                        else:
                            if hasher is None:
                                hasher = sha256()
                            upto = min(have, data_at + size)
                            hasher.update(view[hashed_to - base : upto - base])
                            hashed_to = upto
                            if upto < data_at + size:
                                break
                            digest = hasher.digest()
                            hasher = None
                            learned[member.identity] = digest
                            digests[member] = digest
                    index += 1
                    checked_header = False
            # Send what is checked: up to the first header not yet compared.
            ready = members[index].offset if index < count and not checked_header else have
            ready = min(ready, data_end)
            if changed is not None:  # send what was checked, then cut before that header
                if ready > base:
                    yield bytes(buffer[: ready - base])
                name = os.fsdecode(changed.name)
                raise OSError(f"{name}: the file changed since the download began")
            if ready - base >= chunk_size or ready == data_end:
                with memoryview(buffer) as view:
                    piece = view[: ready - base].tobytes()
                del buffer[: ready - base]
                base = ready
                yield piece
        if index < count:  # cannot happen: the data region ends after the last member
            raise OSError("tar's archive is shorter than its layout")
    finally:
        checksums.remember_many(learned)
