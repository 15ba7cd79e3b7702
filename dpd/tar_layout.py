"""Where every byte of a download's tar lies, from one walk of its folders.

One walk (`archive_layout`) lists every member with the lstat that decides
its header, and from that alone gives the archive's exact length (headers,
data, padding, the checksum manifest and the end blocks), its strong ETag,
and the offset of every member. The stream (dpd.tar_stream) uses the same
list, so the announced length and the bytes sent cannot disagree on which
entries the archive holds, and a request for the bytes from offset N finds
the member holding N by bisection instead of producing the N bytes before it.

The archive is a function of the walk: an unchanged set of files (names,
types, sizes, modes, owners, mtimes) always gives the same bytes and the same
ETag, on any server that sees the same volume, which is what lets a client
resume a cut download with a Range request.

Headers are byte for byte what GNU tar writes (`--format=gnu`), so that a
`tar` process can produce a whole archive (dpd.tar_process) and the Python
path any range of it: the same as `tarfile` in GNU_FORMAT except for the
././@LongLink records of names over 100 bytes, which GNU tar gives mode 0644
and uid 0's owner names (tests/test_download_resume.py and
tests/test_tar_process.py compare them). They are built from precomputed
pieces: `TarInfo.tobuf()` costs ~15 us a member, which is most of the time
of a product of 20,000 small files.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import stat
import tarfile
from array import array
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from itertools import chain
from operator import attrgetter
from types import SimpleNamespace
from typing import Any

from dpd.download import DownloadNotFound, DownloadPlan

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
REG, DIR, SYM = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE
NUL = b"\0"
# Bumped when the bytes of an archive change for the same files (a header
# field, the manifest's place or format), so that no client resumes an old
# download with new bytes.
FORMAT_VERSION = b"dpd-tar-3"
# The lstat fields an ETag covers, besides names, types and link targets.
_ETAG_FIELDS = attrgetter(
    "st_mode", "st_uid", "st_gid", "st_size", "st_mtime_ns", "st_ino", "st_ctime_ns"
)
MANIFEST_NAMES = (b"MANIFEST.sha256", b"MANIFEST.dpd.sha256")
# 64 hex digits, two spaces, the name, a newline (the `sha256sum` format).
MANIFEST_LINE_OVERHEAD = 64 + 2 + 1


class Member:
    """One tar member as the walk saw it: `name` is the member name as sent
    (bytes; a directory's ends with "/"), `path` the file on the volume,
    `info` its lstat."""

    __slots__ = ("header_size", "info", "kind", "linkname", "name", "offset", "path", "size")

    def __init__(
        self, name: bytes, path: bytes, kind: bytes, info: Any, linkname: bytes = b""
    ) -> None:
        self.name = name
        self.path = path
        self.kind = kind
        self.info = info
        self.linkname = linkname
        self.size = info.st_size if kind == REG else 0
        if len(name) <= NAME_MAX and len(linkname) <= LINK_MAX:
            self.header_size = BLOCK
        else:
            self.header_size = header_size(name, linkname)
        self.offset = 0

    @property
    def data_offset(self) -> int:
        return self.offset + self.header_size

    @property
    def end(self) -> int:
        """Where the next member starts: after the data and its padding."""
        return self.offset + self.header_size + self.size + (-self.size % BLOCK)

    @property
    def identity(self) -> tuple[int, int, int, int, int]:
        """What dpd.checksums keys a digest by."""
        info = self.info
        return (info.st_dev, info.st_ino, self.size, info.st_mtime_ns, info.st_ctime_ns)

    def header_matches(self, buffer: bytearray, at: int) -> bool:
        """Whether buffer[at:] starts with this member's header(s) (what
        dpd.tar_process checks tar's output with, ~1 us instead of ~3 us):
        all but the checksum field are compared, and that field is a sum of
        the others, computed by GNU tar as by `fast_header`."""
        info = self.info
        name = self.name
        mtime = info.st_mtime_ns // 1_000_000_000
        if (
            self.header_size != BLOCK
            or self.linkname
            or not 0 <= mtime < 8**11
            or not 0 <= self.size < 8**11
        ):
            return buffer[at : at + self.header_size] == self.header()
        owner, tail, _ = _template(info.st_mode & 0o7777, info.st_uid, info.st_gid, self.kind)
        fixed = name.ljust(NAME_MAX, NUL) + owner + _size_and_mtime(self.size, mtime)
        return buffer[at : at + 148] == fixed and buffer[at + 156 : at + BLOCK] == _blank_link(
            self.kind, tail
        )

    def header(self) -> bytes:
        info = self.info
        return fast_header(
            self.name,
            info.st_mode,
            info.st_uid,
            info.st_gid,
            self.size,
            info.st_mtime_ns // 1_000_000_000,
            self.kind,
            self.linkname,
        )


@dataclass
class ArchiveLayout:
    """A whole archive: its members in order, then the manifest member (whose
    data is computed while streaming), then the end blocks and padding."""

    filename: str
    root: bytes
    members: list[Member]
    offsets: list[int]
    manifest: Member
    manifest_folder: bytes
    manifest_size: int
    size: int
    etag: str
    files: list[Member] = field(default_factory=list)

    @property
    def manifest_data_offset(self) -> int:
        return self.manifest.offset + self.manifest.header_size

    @property
    def end_offset(self) -> int:
        """Where the end-of-archive blocks start."""
        return self.manifest.offset + self.manifest.header_size + _padded(self.manifest_size)

    def member_at(self, offset: int) -> int:
        """Index (in `members`, len(members) for the manifest or beyond) of the
        member whose bytes hold `offset`."""
        return bisect_right(self.offsets, offset) - 1


Watch = Callable[[list[Member], bool], None]
# Members between two calls of a walk's watcher (within a folder; and at its end).
WATCH_EVERY = 256


def archive_layout(plan: DownloadPlan, watch: Watch | None = None) -> ArchiveLayout:
    """Walk the plan's folders once and lay out the archive (see the module
    docstring). A folder that cannot be listed is DownloadNotFound: nothing
    has been sent yet. `watch(members, done)` sees the members as the walk
    finds them (dpd.tar_process starts tar with them), last with done=True."""
    root = os.fsencode(plan.root)
    members: list[Member] = []
    for folder in plan.folders:
        name = os.fsencode(folder)
        path = root + b"/" + name
        try:
            info = os.lstat(path)
        except OSError as exc:
            raise DownloadNotFound(f"File not found: {folder} cannot be read") from exc
        kind = SYM if stat.S_ISLNK(info.st_mode) else DIR
        linkname = os.readlink(path) if kind == SYM else b""
        members.append(Member(name + b"/" if kind == DIR else name, path, kind, info, linkname))
        _walk(path, name, members, watch)
    if watch is not None:
        watch(members, True)
    files = [member for member in members if member.kind == REG]
    folder = _common_folder([os.fsencode(f) for f in plan.folders])
    taken = {member.name.rstrip(b"/") for member in members}
    manifest_name = _manifest_name(folder, taken)
    manifest_size = _manifest_size(files, folder)
    newest = max((m.info.st_mtime_ns for m in members), default=0)
    manifest = _manifest_member(manifest_name, manifest_size, newest)
    offset = 0
    for member in members:
        member.offset = offset
        size = member.size
        offset += member.header_size + size + (-size % BLOCK)
    offsets = [member.offset for member in members]
    numbers = list(chain.from_iterable(map(_ETAG_FIELDS, [m.info for m in members])))
    # Names, types, link targets and those numbers: any change makes another ETag.
    digest = hashlib.sha256(FORMAT_VERSION)
    digest.update(b"\0".join([m.name for m in members]))
    digest.update(b"".join([m.kind for m in members]))
    digest.update(b"\0".join([m.linkname for m in members]))
    try:
        digest.update(array("q", numbers).tobytes())
    except OverflowError:  # an inode number past 2**63 (some network file systems)
        digest.update(" ".join(map(str, numbers)).encode())
    manifest.offset = offset
    offsets.append(offset)
    offset += manifest.header_size + _padded(manifest_size)
    end = 2 * BLOCK
    end += -(offset + end) % RECORD  # GNU tar pads the archive to whole records
    return ArchiveLayout(
        filename=plan.filename,
        root=root,
        members=members,
        offsets=offsets,
        manifest=manifest,
        manifest_folder=folder,
        manifest_size=manifest_size,
        size=offset + end,
        etag='"' + digest.hexdigest()[:40] + '"',
        files=files,
    )


def _walk(path: bytes, name: bytes, members: list[Member], watch: Watch | None) -> None:
    """Depth first, names sorted (as bytes); symlinks are stored, not followed;
    anything but files, directories and symlinks is left out. The loop is
    kept lean: it runs once per file of the archive before the first byte."""
    prefix = name + b"/"
    append = members.append
    try:
        with os.scandir(path) as scan:
            entries = sorted(scan, key=_entry_name)
        for at in range(0, len(entries), WATCH_EVERY):
            for entry in entries[at : at + WATCH_EVERY]:
                info = entry.stat(follow_symlinks=False)
                kind = info.st_mode & _S_IFMT
                if kind == _S_IFREG:
                    append(Member(prefix + entry.name, entry.path, REG, info))
                elif kind == _S_IFDIR:
                    child = prefix + entry.name
                    append(Member(child + b"/", entry.path, DIR, info))
                    _walk(entry.path, child, members, watch)
                elif kind == _S_IFLNK:
                    link = os.readlink(entry.path)
                    append(Member(prefix + entry.name, entry.path, SYM, info, link))
            if watch is not None:
                watch(members, False)
    except DownloadNotFound:
        raise
    except OSError as exc:
        shown = os.fsdecode(name)
        raise DownloadNotFound(f"File not found: {shown} cannot be read") from exc


_entry_name = attrgetter("name")
_S_IFMT, _S_IFREG, _S_IFDIR, _S_IFLNK = 0o170000, stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK


def _common_folder(folders: list[bytes]) -> bytes:
    """The deepest folder holding every product folder ("" when they share none)."""
    parts = [folder.split(b"/") for folder in folders]
    common: list[bytes] = []
    for pieces in zip(*parts, strict=False):
        if any(piece != pieces[0] for piece in pieces):
            break
        common.append(pieces[0])
    return b"/".join(common)


def _manifest_name(folder: bytes, taken: set[bytes]) -> bytes:
    """The manifest's member name: MANIFEST.sha256 in the common folder, or,
    when a product already has a file by that name, a name no member has."""
    prefix = folder + b"/" if folder else b""
    candidates = [*MANIFEST_NAMES] + [b"MANIFEST.dpd-%d.sha256" % n for n in range(2, 1000)]
    for candidate in candidates:
        if prefix + candidate not in taken:
            return prefix + candidate
    raise DownloadNotFound("File not found: no free name for the checksum manifest")


def _manifest_size(files: list[Member], folder: bytes) -> int:
    """The manifest's length, from the names alone (no file is read)."""
    skip = len(folder) + 1 if folder else 0
    names = b"\0".join([m.name for m in files])
    if b"\\" in names or b"\n" in names:
        return sum(manifest_line_size(m.name[skip:]) for m in files)
    return len(names) - max(len(files) - 1, 0) + len(files) * (MANIFEST_LINE_OVERHEAD - skip)


def manifest_line_size(relative: bytes) -> int:
    escaped, prefix = escape_manifest_name(relative)
    return MANIFEST_LINE_OVERHEAD + len(prefix) + len(escaped)


def escape_manifest_name(relative: bytes) -> tuple[bytes, bytes]:
    """(name as written, line prefix): GNU sha256sum writes a name holding a
    backslash or a newline escaped, on a line that starts with a backslash."""
    if b"\\" not in relative and b"\n" not in relative:
        return relative, b""
    return relative.replace(b"\\", b"\\\\").replace(b"\n", b"\\n"), b"\\"


def _manifest_member(name: bytes, size: int, newest_ns: int) -> Member:
    # The newest member's mtime: the same for the same files on every server.
    info = SimpleNamespace(
        st_mode=stat.S_IFREG | 0o644,
        st_uid=0,
        st_gid=0,
        st_size=size,
        st_mtime_ns=newest_ns,
        st_ino=0,
        st_dev=0,
        st_ctime_ns=0,
    )
    return Member(name, b"", REG, info)


def _padded(size: int) -> int:
    return size + (-size % BLOCK)


# --- headers ------------------------------------------------------------------------

MAGIC = tarfile.GNU_MAGIC
NAME_MAX = tarfile.LENGTH_NAME
LINK_MAX = tarfile.LENGTH_LINK
TAIL = NUL * (8 + 8 + 155 + 12)  # devmajor, devminor, prefix, the block's end


def header_size(name: bytes, linkname: bytes) -> int:
    """The header's length: one block, plus GNU long-name/long-link records."""
    size = BLOCK
    if len(linkname) > LINK_MAX:
        size += BLOCK + _padded(len(linkname) + 1)
    if len(name) > NAME_MAX:
        size += BLOCK + _padded(len(name) + 1)
    return size


def gnu_header(
    name: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    kind: bytes,
    linkname: bytes,
    uname: bytes,
    gname: bytes,
) -> bytes:
    """GNU tar's header for these fields (tarfile's GNU_FORMAT header, but for
    the long-name records), without a TarInfo."""
    head = b""
    if len(linkname) > LINK_MAX:
        head += _long_record(linkname, tarfile.GNUTYPE_LONGLINK)
    if len(name) > NAME_MAX:
        head += _long_record(name, tarfile.GNUTYPE_LONGNAME)
    block = b"".join(
        (
            name[:NAME_MAX].ljust(NAME_MAX, NUL),
            _number(mode & 0o7777, 8),
            _number(uid, 8),
            _number(gid, 8),
            _number(size, 12),
            _number(mtime, 12),
            b"        ",
            kind,
            linkname[:LINK_MAX].ljust(LINK_MAX, NUL),
            MAGIC,
            uname[:32].ljust(32, NUL),
            gname[:32].ljust(32, NUL),
            TAIL,
        )
    )
    return head + block[:148] + b"%06o\0" % sum(block) + block[155:]


def fast_header(
    name: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    kind: bytes,
    linkname: bytes,
) -> bytes:
    """gnu_header with the owner's names looked up, from a template per
    (mode, owner, type): only the name, size, mtime, link and checksum are
    filled in per member (~3 us instead of ~15 us)."""
    if (
        len(name) > NAME_MAX
        or len(linkname) > LINK_MAX
        or not 0 <= size < 8**11
        or not 0 <= mtime < 8**11
    ):
        uname, gname = _user_name(uid), _group_name(gid)
        return gnu_header(name, mode, uid, gid, size, mtime, kind, linkname, uname, gname)
    owner, tail, fixed = _template(mode & 0o7777, uid, gid, kind)
    size_field = b"%011o\0" % size
    mtime_field = b"%011o\0" % mtime
    checksum = fixed + sum(name) + sum(size_field) + sum(mtime_field) + sum(linkname)
    return b"".join(
        (
            name.ljust(NAME_MAX, NUL),
            owner,
            size_field,
            mtime_field,
            b"%06o\0 " % checksum,
            kind,
            linkname.ljust(LINK_MAX, NUL),
            tail,
        )
    )


@cache
def _template(mode: int, uid: int, gid: int, kind: bytes) -> tuple[bytes, bytes, int]:
    """(the mode, uid and gid fields; the magic, owner names and the block's
    end; the byte sum of both, the type byte and the blank checksum field)."""
    owner = _number(mode, 8) + _number(uid, 8) + _number(gid, 8)
    names = _user_name(uid)[:32].ljust(32, NUL) + _group_name(gid)[:32].ljust(32, NUL)
    tail = MAGIC + names + TAIL
    return owner, tail, sum(owner) + sum(tail) + sum(kind) + 8 * 32


@lru_cache(maxsize=4096)
def _size_and_mtime(size: int, mtime: int) -> bytes:
    """The size and mtime fields (many small files share both)."""
    return b"%011o\0%011o\0" % (size, mtime)


@cache
def _blank_link(kind: bytes, tail: bytes) -> bytes:
    """A header's bytes from the type byte on, for a member without a link."""
    return kind + NUL * LINK_MAX + tail


def _long_record(name: bytes, kind: bytes) -> bytes:
    """A GNU long-name (or long-link) record as GNU tar writes it: mode 0644
    and uid 0's names, where `tarfile` writes mode 0 and no names."""
    data = name + NUL
    owner = (_user_name(0), _group_name(0))
    fields = (b"././@LongLink", 0o644, 0, 0, len(data), 0, kind, b"", *owner)
    return gnu_header(*fields) + data.ljust(_padded(len(data)), NUL)


def _number(value: int, digits: int) -> bytes:
    if 0 <= value < 8 ** (digits - 1):
        return b"%0*o\0" % (digits - 1, value)
    return bytes(tarfile.itn(value, digits, tarfile.GNU_FORMAT))


@cache
def _user_name(uid: int) -> bytes:
    try:
        return pwd.getpwuid(uid).pw_name.encode("utf-8", "surrogateescape")
    except KeyError:
        return b""


@cache
def _group_name(gid: int) -> bytes:
    try:
        return grp.getgrgid(gid).gr_name.encode("utf-8", "surrogateescape")
    except KeyError:
        return b""
