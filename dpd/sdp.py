"""The SDP configuration database (etcd): the one module that talks to it.

It reads raw keys with the `etcd3` client (ska-sdp-config is not on PyPI;
reference dlm-sdp.md 2.1, 3.2) and knows nothing of the catalogue: a
`Snapshot` is every key under the watched prefixes at one revision, and a
watch delivers `Change`s (or the error that ended it) into a queue that the
watcher's own thread drains (dpd.sdp_watcher). Keys are handed on without
SDP_CONFIG_PATH, so the rest of the code sees the layout of reference 2.2.

A `Connection` is made by the process that uses it, after any fork (a gRPC
channel does not survive one), and closed when it fails: the watcher then
makes a new one after its reconnect delay.
"""

from __future__ import annotations

import contextlib
import logging
import queue
from dataclasses import dataclass
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

# What the watcher reads (reference 2.7); /eb/ for the execution blocks'
# own keys, /pb/ for the EB of each flow and the PB states, /flow/ itself.
PREFIXES = ("/eb/", "/pb/", "/flow/")
SNAPSHOT_PAGE = 1000


class EtcdUnavailable(Exception):
    """etcd did not answer, or the watch ended (the message says why)."""


class WatchCompacted(EtcdUnavailable):
    """The watch cannot resume: etcd compacted the revisions it needed."""


@dataclass(frozen=True)
class Snapshot:
    revision: int
    values: dict[str, bytes]  # key (without SDP_CONFIG_PATH) -> raw value


@dataclass(frozen=True)
class Change:
    key: str
    value: bytes | None  # None: the key was deleted
    revision: int


def enabled() -> bool:
    """Flow enrichment is on while a host is configured (SDP_ETCD_HOST)."""
    return bool(settings.SDP_ETCD_HOST)


def endpoint() -> str:
    return f"{settings.SDP_ETCD_HOST}:{settings.SDP_CONFIG_PORT}"


def _full_key(prefix: str) -> str:
    return settings.SDP_CONFIG_PATH + prefix


def _short_key(raw: bytes) -> str | None:
    """The key as reference 2.2 writes it, or None for a key that is not
    UTF-8 or lies outside SDP_CONFIG_PATH."""
    try:
        key = raw.decode()
    except UnicodeDecodeError:
        return None
    root = settings.SDP_CONFIG_PATH
    if root:
        if not key.startswith(root + "/"):
            return None
        key = key[len(root) :]
    return key


class Connection:
    """One client of etcd; every failure is EtcdUnavailable."""

    def __init__(self, *, timeout: float | None = None) -> None:
        import etcd3  # here, not at import: web processes never load gRPC

        # The client's timeout bounds every call, including the creation of a
        # watch (etcd3 0.12 waits for it without limit otherwise).
        self.timeout = timeout or min(settings.SDP_WATCHER_TIMEOUT_SECONDS, 5.0)
        self._client = etcd3.client(
            host=settings.SDP_ETCD_HOST, port=settings.SDP_CONFIG_PORT, timeout=self.timeout
        )
        self._watch_ids: list[int] = []

    def _call(self, what: str, function, *args, **kwargs) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as exc:  # grpc errors, etcd3's own, a closed channel
            from etcd3.exceptions import RevisionCompactedError

            if isinstance(exc, RevisionCompactedError):
                raise _as_unavailable(exc) from exc
            raise EtcdUnavailable(f"etcd at {endpoint()}: {what} failed: {_describe(exc)}") from exc

    def ping(self) -> int:
        """etcd's current revision (a cheap read that proves it answers)."""
        response = self._call(
            "status check", self._client.get_response, _full_key("/"), serializable=False
        )
        return response.header.revision

    def snapshot(self) -> Snapshot:
        """Every key under PREFIXES at one revision (the first read's).

        Read in pages of SNAPSHOT_PAGE keys: one answer for 20,000 flows would
        pass gRPC's 4 MiB message limit."""
        from etcd3.utils import increment_last_byte

        values: dict[str, bytes] = {}
        revision: int | None = None
        for prefix in PREFIXES:
            start = _full_key(prefix).encode()
            end = increment_last_byte(start)
            while True:
                response = self._call(f"read of {prefix}", self._range, start, end, revision)
                if revision is None:
                    revision = response.header.revision
                for kv in response.kvs:
                    key = _short_key(kv.key)
                    if key is None:
                        logger.warning("sdp: ignoring key %r (not UTF-8)", kv.key)
                        continue
                    values[key] = kv.value
                if not response.more or not response.kvs:
                    break
                start = response.kvs[-1].key + b"\0"
        return Snapshot(revision or 0, values)

    def _range(self, start: bytes, end: bytes, revision: int | None) -> Any:
        """One page of keys from `start`, in key order, at `revision` (the
        current one when None). etcd3 0.12's own range calls drop `limit`
        and `revision`, so the request is built here."""
        from etcd3 import etcdrpc

        request = etcdrpc.RangeRequest(
            key=start,
            range_end=end,
            limit=SNAPSHOT_PAGE,
            revision=revision or 0,
            sort_order=etcdrpc.RangeRequest.ASCEND,
            sort_target=etcdrpc.RangeRequest.KEY,
        )
        client = self._client
        return client.kvstub.Range(
            request, self.timeout, credentials=client.call_credentials, metadata=client.metadata
        )

    def watch(self, start_revision: int, sink: queue.Queue) -> None:
        """Put each batch of changes from start_revision on (a list of
        Change), or the exception that ended the watch, into `sink`."""

        def deliver(response: Any) -> None:
            if isinstance(response, Exception):
                sink.put(_as_unavailable(response))
                return
            changes = []
            for event in response.events:
                key = _short_key(event.key)
                if key is None:
                    logger.warning("sdp: ignoring key %r (not UTF-8)", event.key)
                    continue
                deleted = type(event).__name__ == "DeleteEvent"
                changes.append(Change(key, None if deleted else event.value, event.mod_revision))
            sink.put(changes)

        for prefix in PREFIXES:
            watch_id = self._call(
                f"watch of {prefix}",
                self._client.add_watch_prefix_callback,
                _full_key(prefix),
                deliver,
                start_revision=start_revision,
            )
            self._watch_ids.append(watch_id)

    def close(self) -> None:
        """Cancel the watches and close the channel (which also ends the
        client's watch thread); never raises."""
        for watch_id in self._watch_ids:
            with contextlib.suppress(Exception):
                self._client.cancel_watch(watch_id)
        self._watch_ids = []
        watcher = getattr(self._client, "watcher", None)
        if watcher is not None:
            # etcd3's watch thread reopens its stream in a loop; on a closed
            # channel that raises, and the thread dies with a traceback on
            # stderr. SystemExit ends the thread silently instead.
            watcher._watch_stub = _StoppedWatchStub()
        with contextlib.suppress(Exception):
            self._client.close()


class _StoppedWatchStub:
    def Watch(self, *args: Any, **kwargs: Any) -> None:  # the gRPC stub method it stands for
        raise SystemExit


def _as_unavailable(exc: Exception) -> EtcdUnavailable:
    from etcd3.exceptions import RevisionCompactedError

    if isinstance(exc, RevisionCompactedError):
        return WatchCompacted(
            f"etcd at {endpoint()} compacted the watched revisions "
            f"(now from {exc.compacted_revision})"
        )
    return EtcdUnavailable(f"etcd at {endpoint()}: the watch ended: {_describe(exc)}")


def _describe(exc: Exception) -> str:
    from etcd3.exceptions import RevisionCompactedError

    if isinstance(exc, RevisionCompactedError):
        return f"revisions compacted up to {exc.compacted_revision}"
    details = getattr(exc, "details", None)
    if callable(details):
        with contextlib.suppress(Exception):
            return f"{type(exc).__name__}: {details()}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
