"""A run stops at its next batch boundary when its process is asked to stop.

Orchestrators stop a service with SIGTERM and kill it with SIGKILL some
seconds later (Kubernetes: 30 s). A run of hours that ignored SIGTERM would be
killed mid-batch, and its slot would stay claimed until the stale limit. So
while a run goes on, `stop_on_signals()` makes SIGTERM and SIGINT only note
the request; the run checks it (`check()`) after every committed batch and
heartbeat, ends as `interrupted` with its counts, and releases the slot. The
next run skips what this one wrote (unchanged mtime and size).

SIGTERM must reach the process that runs the index. django-q2 stops its
cluster by letting each worker finish its task, which for an index is the
whole run; our `qcluster` (indexing/management/commands/qcluster.py) first
forwards the signal to the cluster's processes that catch it
(`signal_catching_descendants`): a worker running an index, never an idle
worker or django-q2's own processes, for which SIGTERM means death.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_requested: str = ""


class StopRequested(Exception):
    """The process was asked to stop: the run ends at this batch boundary."""


def _note(signum: int, frame: object) -> None:
    global _requested
    _requested = signal.Signals(signum).name


def requested() -> str:
    """The name of the signal that asked this process to stop, or ""."""
    return _requested


def check() -> None:
    if _requested:
        raise StopRequested(f"{_requested} received")


def sleep(seconds: float) -> bool:
    """Sleep, waking early when a stop is requested; True if it was."""
    end = time.monotonic() + seconds
    while not _requested and (left := end - time.monotonic()) > 0:
        time.sleep(min(left, 0.2))
    return bool(_requested)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Note SIGTERM/SIGINT instead of dying, for the duration of a run. Only
    the main thread can set handlers; elsewhere the process keeps its own."""
    global _requested
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _requested = ""
    previous = {signum: signal.signal(signum, _note) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def ignore_stop_signals() -> None:
    """For a run's parse processes: they share the worker's process group, so
    a signal sent to the whole group (systemd, Ctrl-C) must not kill them
    mid-chunk; the run shuts its pool down itself."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _catches(pid: int, signum: int) -> bool:
    """Whether `pid` has a handler for `signum` (SigCgt in /proc/<pid>/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def signal_catching_descendants(signum: int = signal.SIGTERM) -> list[int]:
    """Send `signum` to every descendant of this process that handles it
    (a worker running an index); returns their pids. Linux only: elsewhere
    nothing is sent and runs end with their task, as django-q2 does."""
    sent = []
    if not Path("/proc/self/status").exists():
        return sent
    for pid in _descendants(os.getpid()):
        if _catches(pid, signum):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
                sent.append(pid)
    return sent
