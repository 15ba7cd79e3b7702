"""Which process holds the indexing slot, and proof that it is gone.

A claim records where its holder runs (`describe_this_process()`): the host
name (the pod name in Kubernetes), the pid and the kernel's start time of that
pid, the boot id, the pid and network namespaces, and the machine id. An
instance that later finds the slot still marked running can sometimes prove
the holder dead without waiting for the stale heartbeat limit
(`gone_reason()`):

- same host, same boot, same pid namespace: the pid no longer runs, or runs a
  process that started at another time (the pid was reused). A service
  restarted on the same machine (systemd, a shell, a restarted VM process).
- same host, same boot, same network namespace but another pid namespace (a
  container restarted inside its pod keeps the pod's network): the holder
  bound an abstract Unix socket named after its lease, which the kernel
  frees when the last process holding it dies; if we can bind that name,
  nobody holds it.
- same host and machine id, another boot id: the machine rebooted since.

Anything else (another host, missing /proc, a machine without an id) proves
nothing, and the stale limit decides as before. Linux only; elsewhere the
record has no ids and nothing is proven.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any

PROC = Path("/proc")


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _namespace(kind: str) -> str:
    try:
        return os.readlink(PROC / "self" / "ns" / kind)
    except OSError:
        return ""


# A zombie (Z) or dying (X) process runs nothing and holds nothing: its pid
# stays until its parent reaps it, for seconds or for ever where the orphan's
# new parent is a PID 1 that reaps lazily or never (a container without an
# init), and a restart must not wait on it.
_ENDED_STATES = frozenset("ZX")


def _start_ticks(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks after boot), None if no
    such pid runs (none at all, or one that ended and is not yet reaped)."""
    stat = _read(PROC / str(pid) / "stat")
    if not stat:
        return None
    # The command name may hold spaces and parentheses: fields follow the last ")".
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in _ENDED_STATES:
        return None
    return int(fields[19])


def _machine_id() -> str:
    return _read("/etc/machine-id") or _read("/var/lib/dbus/machine-id")


def describe_this_process() -> dict[str, Any]:
    """What a claim records about its holder (this process)."""
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "start_ticks": _start_ticks(pid),
        "boot_id": _read(PROC / "sys" / "kernel" / "random" / "boot_id"),
        "machine_id": _machine_id(),
        "pid_ns": _namespace("pid"),
        "net_ns": _namespace("net"),
    }


def socket_name(token: object) -> bytes:
    """The abstract socket a holder binds for the life of its lease."""
    return f"\0dpd-indexing-holder-{token}".encode()


# Sockets held by this process, by lease token (closed on release).
_held: dict[str, socket.socket] = {}


def hold_socket(token: object) -> None:
    """Bind the lease's abstract socket until `drop_socket` (nothing where
    there are no abstract sockets, i.e. not Linux: nothing is proven there)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(socket_name(token))
    except OSError:
        sock.close()
        return
    _held[str(token)] = sock


def drop_socket(token: object) -> None:
    sock = _held.pop(str(token), None)
    if sock is not None:
        sock.close()


def drop_inherited_sockets() -> None:
    """In a process forked from a holder (a parse process): let go of the
    holder's sockets, so that only the holder itself keeps its name bound."""
    for token in list(_held):
        drop_socket(token)


def _socket_free(token: object) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(socket_name(token))
        except OSError:
            return False
    return True


def gone_reason(recorded: dict[str, Any] | None, token: object) -> str:
    """Why the recorded holder is certainly dead, or "" when that cannot be proven here."""
    if not recorded or not recorded.get("boot_id"):
        return ""
    here = describe_this_process()
    if not here["boot_id"] or recorded.get("host") != here["host"]:
        return ""
    where = f"pid {recorded.get('pid')} on {here['host']}"
    if recorded["boot_id"] != here["boot_id"]:
        same_machine = here["machine_id"] and recorded.get("machine_id") == here["machine_id"]
        return f"{where} ran before the machine rebooted" if same_machine else ""
    if recorded.get("pid_ns") and recorded.get("pid_ns") == here["pid_ns"]:
        ticks = _start_ticks(int(recorded["pid"]))
        if ticks is None:
            return f"{where} no longer runs"
        if recorded.get("start_ticks") is not None and ticks != recorded["start_ticks"]:
            return f"{where} no longer runs (the pid was reused)"
        return ""
    if recorded.get("net_ns") and recorded.get("net_ns") == here["net_ns"] and token:
        with contextlib.suppress(OSError):
            if _socket_free(token):
                return f"{where} is gone (its container restarted)"
    return ""
