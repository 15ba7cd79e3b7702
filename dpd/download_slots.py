"""How many downloads run at once, and what happens to each one that ends early.

A download holds a thread of its web process for as long as the client takes
to read it (hours for a large product on a slow link). The web process has
DPD_DOWNLOADS_PER_PROCESS + DPD_WEB_THREADS threads (dpd.gunicorn_conf), so
capping downloads per process keeps DPD_WEB_THREADS free for everything else.
A second cap, DPD_DOWNLOADS_TOTAL, spans all the processes of one server: each
download holds an exclusive flock on one of that many files in a folder the
gunicorn master makes (`share_between_processes`). The kernel drops a dead
process's locks, so a killed worker never leaks a slot.

Beyond either cap the request is refused with `DownloadsBusy` before any byte
is sent; the API answers 503 with Retry-After.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_in_this_process = 0
# Set in the gunicorn master before it forks its workers; None elsewhere
# (manage.py runserver, the test client): then only the per-process cap applies.
_shared_folder: Path | None = None


class DownloadsBusy(Exception):
    """Every download slot is taken; the message is the 503 `detail`."""


def share_between_processes() -> Path:
    """Make the slot folder for the processes forked after this call (the
    gunicorn master's config calls it); `stop_sharing` removes it."""
    global _shared_folder
    parent = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    _shared_folder = Path(tempfile.mkdtemp(prefix="dpd-download-slots-", dir=parent))
    return _shared_folder


def stop_sharing() -> None:
    if _shared_folder is not None:
        shutil.rmtree(_shared_folder, ignore_errors=True)


class Slot:
    """One download's place; `release` gives it back (idempotent)."""

    def __init__(self, handle: int | None) -> None:
        self._handle = handle
        self._released = False

    def release(self) -> None:
        global _in_this_process
        with _lock:
            if self._released:
                return
            self._released = True
            _in_this_process -= 1
        if self._handle is not None:
            os.close(self._handle)  # drops the flock


def acquire() -> Slot:
    """A slot for one download, or DownloadsBusy naming the cap that was hit."""
    global _in_this_process
    per_process = settings.DPD_DOWNLOADS_PER_PROCESS
    with _lock:
        if _in_this_process >= per_process:
            raise DownloadsBusy(_busy_message(per_process))
        _in_this_process += 1
    try:
        handle = _lock_a_shared_slot()
    except BaseException:
        with _lock:
            _in_this_process -= 1
        raise
    return Slot(handle)


def _lock_a_shared_slot() -> int | None:
    folder = _shared_folder
    if folder is None:
        return None
    total = settings.DPD_DOWNLOADS_TOTAL
    for number in range(total):
        handle = os.open(folder / f"slot-{number}", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            continue
        return handle
    raise DownloadsBusy(_busy_message(total))


def _busy_message(limit: int) -> str:
    return (
        f"Too many downloads in progress ({limit} at once); "
        f"try again in {settings.DPD_DOWNLOADS_RETRY_AFTER_SECONDS} seconds."
    )


class TrackedDownload:
    """A download's byte stream that gives its slot back when the response
    closes, however it ends, and logs a download that ended short of its
    length: the client went away or stopped reading, or the server stopped.

    A class rather than a generator: Django closes a streaming response's
    content when the response closes, and the close of a generator that was
    never started would not run its clean-up."""

    def __init__(self, chunks: Iterator[bytes], *, name: str, size: int, slot: Slot) -> None:
        self.chunks = chunks
        self.name = name
        self.size = size
        self.slot = slot
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            yield chunk
            self.sent += len(chunk)  # counted once the server has taken it

    def close(self) -> None:
        try:
            with contextlib.suppress(Exception):
                self.chunks.close()  # type: ignore[attr-defined]
        finally:
            self.slot.release()
        if self.sent < self.size:
            logger.warning(
                "download of %s cut after %d of %d bytes", self.name, self.sent, self.size
            )
