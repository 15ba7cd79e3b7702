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
  chmod-ed, gone or turned into a symlink between the walk's lstat and tar's
  is caught as on the Python path. One difference: a header holds no inode,
  so a file replaced (renamed over) by another of the same size, mtime, mode
  and owner is sent as tar reads it, where the Python path refuses the new
  inode;
- tar must exit 0: it reports a file that changed or shrank while it read it
  (it pads a shrunk file with zeros), and such an archive is cut before its
  end-of-archive blocks, so the client sees an incomplete transfer.

tar starts while the walk still runs (`EarlyTar`, the walk's watcher): the
exact Content-Length needs every file's lstat before the first byte, and that
walk costs about as much as tar's whole run, so tar reads the files the walk
has already seen on the other core, its output held in a buffer of at most
DPD_TAR_READ_AHEAD_MIB until the response starts. A name reaches tar only
after the walk's lstat of it, so the header check above still compares tar's
view with the walk's.

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
import queue
import shutil
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator

from django.conf import settings

from dpd import checksums
from dpd.tar_layout import DIR, REG, ArchiveLayout, Member

logger = logging.getLogger("dpd.download")

# Above this mean file size the per-file cost no longer matters and the
# Python path is faster (no pipe in between; hashing on a helper thread).
TAR_MAX_MEAN_BYTES = 1024 * 1024
MIB = 1024 * 1024
PIPE_BYTES = MIB
READ_BYTES = MIB
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
    # The data offset of the manifest counts headers too: a bound that is enough here.
    return _suits(len(layout.files), layout.manifest.offset)


def _suits(files: int, data: int) -> bool:
    """Whether `files` regular files of `data` bytes (headers included) suit tar."""
    least = settings.DPD_TAR_PROCESS_MIN_FILES
    if least <= 0 or files < least:
        return False
    return data < TAR_MAX_MEAN_BYTES * files and gnu_tar() is not None


def tar_members(
    layout: ArchiveLayout, digests: dict[Member, bytes], tar: TarProcess
) -> Iterator[bytes]:
    """Bytes [0, manifest offset) of the archive from `tar` (fed the layout's
    members), each member checked against the walk; the digests of regular
    files go to `digests`. An OSError cuts the stream (dpd.tar_stream logs
    it). The process is closed when the stream ends, however it ends."""
    tar.streaming()
    try:
        try:
            yield from _checked(layout, tar.read, digests)
        except OSError as exc:
            if tar.running():  # a changed member: tar is fine, we stop it
                raise
            raise OSError(f"{exc} (tar: {tar.said()})") from exc
        while tar.read():  # tar's end blocks: closing the pipe first would be EPIPE
            pass
        if (status := tar.wait()) != 0:
            raise OSError(f"tar exited with status {status}: {tar.said()}")
    finally:
        tar.close()


def started(layout: ArchiveLayout) -> TarProcess:
    """tar, given every member of a finished walk."""
    tar = TarProcess(layout.root, read_ahead=PIPE_BYTES)
    tar.feed(layout.members)
    tar.fed_all()
    return tar


class EarlyTar:
    """The walk's watcher (dpd.tar_layout.archive_layout's `watch`): starts
    tar once the members walked so far would suit it, and feeds it each
    member as soon as the walk has its lstat. `take` hands the process to the
    stream; `close` stops it when the request ends another way (a Range after
    all, an archive that no longer suits, a refusal, an error)."""

    def __init__(self, root: bytes) -> None:
        self.root = root
        self.tar: TarProcess | None = None
        self.given_up = False
        self.seen = self.fed = self.files = self.data = 0

    def __call__(self, members: list[Member], done: bool) -> None:
        if self.given_up:
            return
        if self.tar is None:
            for member in members[self.seen :]:
                if member.kind == REG:
                    self.files += 1
                    self.data += member.header_size + member.size
            self.seen = len(members)
            if not _suits(self.files, self.data):
                return
            try:
                self.tar = TarProcess(self.root, read_ahead=settings.DPD_TAR_READ_AHEAD_MIB * MIB)
            except OSError as exc:  # the stream starts one of its own, and reports it
                logger.warning("tar could not start during the walk: %s", exc)
                self.given_up = True
                return
        self.tar.feed(members[self.fed :])
        self.fed = len(members)
        if done:
            self.tar.fed_all()

    def take(self, layout: ArchiveLayout) -> TarProcess | None:
        """The running tar, if it was given exactly the layout's members."""
        tar, self.tar = self.tar, None
        if tar is not None and self.fed != len(layout.members):
            tar.close()
            return None
        return tar

    def close(self) -> None:
        self.given_up = True
        if self.tar is not None:
            self.tar.close()
            self.tar = None


def early_tar(root: os.PathLike | bytes) -> EarlyTar | None:
    """A watcher for the walk of a whole download, or None when tar is off
    or may not read ahead."""
    if settings.DPD_TAR_PROCESS_MIN_FILES <= 0 or settings.DPD_TAR_READ_AHEAD_MIB <= 0:
        return None
    return EarlyTar(os.fsencode(root)) if gnu_tar() is not None else None


class TarProcess:
    """One GNU tar process for one archive. It reads the names it is fed as
    they come (`--files-from=-`, from a helper thread, so a walk never waits
    for tar); a second helper thread reads its output into a buffer of at
    most `read_ahead` bytes, so tar keeps working while nobody reads yet."""

    def __init__(self, root: bytes, *, read_ahead: int) -> None:
        # tar's messages go to a file, never to a pipe that tar could fill and block on.
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        argv = [
            gnu_tar(),
            "--create",
            "--file=-",
            "--format=gnu",
            # Whole 1 MiB writes: fewer, larger reads for the output thread,
            # which takes the GIL from the walk for each. The record size only
            # pads tar's end, which is discarded (tar_members).
            "--record-size=1M",
            "--no-recursion",
            "--hard-dereference",  # a hard link is a second full copy, as the walk counts it
            "--null",
            "--verbatim-files-from",
            "--no-unquote",
            "--directory",  # before the names: tar's -C is positional
            os.fsdecode(root),
            "--files-from=-",
        ]
        try:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.errors,
                env={"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            )
        except BaseException:
            self.errors.close()
            raise
        with contextlib.suppress(OSError):  # a smaller pipe only means more reads
            fcntl.fcntl(self.process.stdout.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
        self.closed = False
        self.output = _Output(read_ahead)
        self.names: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.threads = [
            threading.Thread(target=self._send_names, name="dpd-tar-names", daemon=True),
            threading.Thread(target=self._read_output, name="dpd-tar-output", daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def feed(self, members: list[Member]) -> None:
        if members:
            names = [m.name[:-1] if m.kind == DIR else m.name for m in members]
            self.names.put(b"\0".join(names) + b"\0")

    def fed_all(self) -> None:
        self.names.put(None)

    def streaming(self) -> None:
        """The response has started: read ahead no more than the pipe holds."""
        self.output.limit = min(self.output.limit, PIPE_BYTES)

    def read(self) -> bytes:
        """tar's next bytes, b"" at its end."""
        return self.output.take(READ_BYTES)

    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self) -> int:
        return self.process.wait()

    def said(self) -> str:
        self.errors.seek(0)
        return self.errors.read(2000).decode("utf-8", "replace").strip()

    def close(self) -> None:
        """Stop tar if it still runs, and its helper threads; reap it."""
        if self.closed:
            return
        self.closed = True
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.names.put(None)
        self.output.close()
        for thread in self.threads:
            thread.join()
        self.process.stdout.close()
        self.errors.close()

    def _send_names(self) -> None:
        stdin = self.process.stdin
        try:
            while (names := self.names.get()) is not None:
                stdin.write(names)
                stdin.flush()
        except OSError:  # tar ended (killed, or failed: its exit status says why)
            pass
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def _read_output(self) -> None:
        fd = self.process.stdout.fileno()
        try:
            while (data := os.read(fd, READ_BYTES)) and self.output.put(data):
                pass
        except OSError:
            pass
        finally:
            self.output.end()


class _Output:
    """tar's output between the thread that reads it and the stream: at most
    `limit` bytes held, the reading thread waits beyond."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pieces: deque[bytes] = deque()
        self.held = 0
        self.ended = self.closed = False
        self.changed = threading.Condition()

    def put(self, data: bytes) -> bool:
        """Hold `data`; False once the stream is closed."""
        with self.changed:
            while self.held >= self.limit and not self.closed:
                self.changed.wait()
            if self.closed:
                return False
            self.pieces.append(data)
            self.held += len(data)
            self.changed.notify_all()
            return True

    def take(self, most: int) -> bytes:
        """What is held, up to about `most` bytes, once there is any; b"" at the end."""
        with self.changed:
            while not self.pieces and not self.ended:
                self.changed.wait()
            taken = []
            size = 0
            while self.pieces and size < most:
                taken.append(self.pieces.popleft())
                size += len(taken[-1])
            self.held -= size
            self.changed.notify_all()
        return b"".join(taken)

    def end(self) -> None:
        with self.changed:
            self.ended = True
            self.changed.notify_all()

    def close(self) -> None:
        with self.changed:
            self.closed = True
            self.pieces.clear()
            self.changed.notify_all()


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
