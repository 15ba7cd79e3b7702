"""Downloads: a tar of product folders, built while it is sent.

Everything that can fail cleanly (unknown product, no files, a folder gone
from the volume, a folder outside it) is decided in `plan_download`, before
the response starts; once bytes flow, a failure can only cut the stream
(reference 2.9, 6). The archive's length is known before the first byte
(`tar_size`, a walk that stats every member), so the response has a
Content-Length. The stream holds one chunk at a time whatever the size: tar
headers come from `TarInfo.tobuf()`, file contents are copied in
STREAM_CHUNK_SIZE pieces, and there is never a temporary archive.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath

from django.conf import settings

from dpd.models import DataProduct
from dpd.volume import volume_root

logger = logging.getLogger(__name__)

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE


class DownloadNotFound(LookupError):
    """Nothing to send; the message is the 404 `detail` (reference 2.9)."""


class DownloadInterrupted(OSError):
    """A file changed or vanished after the stream started; the tar is cut."""


@dataclass(frozen=True)
class DownloadPlan:
    """What one download sends: folders relative to the volume root, none
    inside another, each checked to be a directory inside the volume."""

    filename: str
    root: Path
    folders: tuple[str, ...]


def plan_download(products: Iterable[DataProduct], *, filename: str, asked: str) -> DownloadPlan:
    """Check every product folder before the first byte; `asked` names the
    request in error messages ("uid …" or "execution_block …")."""
    products = list(products)
    if not products:
        raise DownloadNotFound(f"File not found: no data product with {asked}")
    folders = sorted({p.dataproduct_file for p in products if p.has_files})
    if not folders:
        raise DownloadNotFound(
            f"File not found: the data product with {asked} has no files on the volume"
        )
    root = volume_root()
    real_root = os.path.realpath(root)
    for folder in folders:
        relative = PurePosixPath(folder)
        real = os.path.realpath(root / relative)
        inside = relative.parts and ".." not in relative.parts and not relative.is_absolute()
        if not inside or os.path.commonpath([real_root, real]) != real_root:
            logger.error("download refused: product folder %r is outside the volume", folder)
            raise DownloadNotFound(f"File not found: {folder} is not inside the volume")
        if not os.path.isdir(real):
            raise DownloadNotFound(f"File not found: {folder} is no longer on the volume")
    return DownloadPlan(filename=filename, root=root, folders=_outermost(folders))


def _outermost(folders: list[str]) -> tuple[str, ...]:
    """Drop folders inside another selected folder, so each file goes once."""
    kept: list[PurePosixPath] = []
    for folder in sorted(PurePosixPath(f) for f in folders):
        if not any(folder.is_relative_to(parent) for parent in kept):
            kept.append(folder)
    return tuple(str(folder) for folder in kept)


def tar_size(plan: DownloadPlan) -> int:
    """The archive's length in bytes, from a walk of the folders before the
    stream starts (headers and padding included), so the response can carry
    a Content-Length: clients show progress and can tell a cut download from
    a complete one, and the server sends the bytes as they are instead of in
    chunked framing.

    A folder that changes between this walk and the stream makes the stream
    cut itself (`stream_tar` with `expected_size`), never send a different
    length than announced."""
    total = 0
    name = plan.folders[0]
    try:
        for name, path in _walk(plan):
            info, kind, linkname = _entry(path)
            if kind is None:
                continue
            total += len(_header(name, info, kind, linkname))
            if kind == tarfile.REGTYPE:
                total += info.st_size + -info.st_size % BLOCK
    except OSError as exc:
        raise DownloadNotFound(f"File not found: {name} cannot be read") from exc
    end = 2 * BLOCK
    return total + end + (-(total + end) % RECORD)


def stream_tar(
    plan: DownloadPlan, *, chunk_size: int | None = None, expected_size: int | None = None
) -> Iterator[bytes]:
    """The archive as chunks of about `chunk_size` bytes (default STREAM_CHUNK_SIZE).

    With `expected_size` (what `tar_size` announced) the stream stops with
    DownloadInterrupted as soon as the folders turn out to hold more or less
    than that."""
    chunk_size = chunk_size or settings.STREAM_CHUNK_SIZE
    pending = bytearray()
    written = 0
    for name, path in _walk(plan):
        try:
            pieces = _member(name, path, chunk_size)
            for piece in pieces:
                written += len(piece)
                if expected_size is not None and written > expected_size - 2 * BLOCK:
                    raise DownloadInterrupted(f"{name}: the folders changed since the start")
                if not pending and len(piece) >= chunk_size:
                    yield piece
                    continue
                pending += piece
                if len(pending) >= chunk_size:
                    yield bytes(pending)
                    pending.clear()
        except OSError as exc:
            logger.error(
                "download of %s cut after %d bytes: %s: %s", plan.filename, written, name, exc
            )
            raise DownloadInterrupted(f"{name}: {exc}") from exc
    end = 2 * BLOCK
    end += -(written + end) % RECORD  # GNU tar pads the archive to whole records
    if expected_size is not None and written + end != expected_size:
        logger.error(
            "download of %s cut: the folders changed after it began (%d of %d bytes)",
            plan.filename,
            written + end,
            expected_size,
        )
        raise DownloadInterrupted("the folders changed after the download began")
    pending += bytes(end)
    yield bytes(pending)


def _walk(plan: DownloadPlan) -> Iterator[tuple[str, Path]]:
    """(member name, path) depth first, names sorted; symlinks are not followed."""
    for folder in plan.folders:
        yield folder, plan.root / folder
        yield from _walk_dir(folder, plan.root / folder)


def _walk_dir(name: str, path: Path) -> Iterator[tuple[str, Path]]:
    try:
        with os.scandir(path) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError as exc:
        logger.error("download: cannot list %s: %s", name, exc)
        raise DownloadInterrupted(f"{name}: {exc}") from exc
    for entry in entries:
        child = f"{name}/{entry.name}"
        yield child, Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            yield from _walk_dir(child, Path(entry.path))


def _entry(path: Path) -> tuple[os.stat_result, bytes | None, str]:
    """(lstat, tar member type or None when not sent, link target): which
    entries an archive holds, for `tar_size` and `_member` alike, so the
    announced length and the stream cannot disagree on it."""
    info = os.lstat(path)
    if stat.S_ISDIR(info.st_mode):
        return info, tarfile.DIRTYPE, ""
    if stat.S_ISLNK(info.st_mode):
        return info, tarfile.SYMTYPE, os.readlink(path)
    if stat.S_ISREG(info.st_mode):
        return info, tarfile.REGTYPE, ""
    return info, None, ""


def _member(name: str, path: Path, chunk_size: int) -> Iterator[bytes]:
    """One tar member: header, then for a regular file its bytes padded to a block."""
    info, kind, linkname = _entry(path)
    if kind == tarfile.REGTYPE:
        yield from _file(name, path, chunk_size)
    elif kind is not None:
        yield _header(name, info, kind, linkname)
    else:
        logger.info("download: skipping %s (not a file, directory or symlink)", name)


def _file(name: str, path: Path, chunk_size: int) -> Iterator[bytes]:
    # O_NOFOLLOW: the path was a regular file a moment ago; never follow a
    # symlink swapped in since then.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb", buffering=0) as handle:
        info = os.fstat(handle.fileno())
        size = info.st_size
        yield _header(name, info, tarfile.REGTYPE)
        remaining = size
        while remaining:
            data = handle.read(min(chunk_size, remaining))
            if not data:
                raise DownloadInterrupted(f"file shrank to {size - remaining} of {size} bytes")
            remaining -= len(data)
            yield data
    if size % BLOCK:
        yield bytes(BLOCK - size % BLOCK)


def _header(name: str, info: os.stat_result, kind: bytes, linkname: str = "") -> bytes:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.mode = stat.S_IMODE(info.st_mode)
    member.uid = info.st_uid
    member.gid = info.st_gid
    member.uname = _user_name(info.st_uid)
    member.gname = _group_name(info.st_gid)
    member.mtime = int(info.st_mtime)
    member.size = info.st_size if kind == tarfile.REGTYPE else 0
    member.linkname = linkname
    return member.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


@cache
def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


@cache
def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return ""
