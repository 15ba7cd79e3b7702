"""The flow watcher: etcd's flows into the catalogue, by one instance at a time.

`manage.py sdpwatch` runs it (`runservice` starts that beside the django-q2
worker). Every instance on a database runs one; they elect the writer with
the indexing leader's slot mechanism (indexing.leader: one conditional UPDATE
claims the slot `sdp_flow_watcher` in dpd_indexing_state when it is free or
its heartbeat is older than SDP_WATCHER_STALE_SECONDS). The others stand by
and poll the slot, so one takes over when the writer dies.

The writer (reference dlm-sdp.md 2.7): snapshot `/eb/`, `/pb/`, `/flow/`,
write it (dpd.sdp_sync), watch from the snapshot's revision + 1 and apply each
batch of changes as it comes. Any etcd error, a compacted watch, or silence
beyond the watcher timeout that a status read does not explain: record the
watcher as disconnected, wait the reconnect delay, snapshot again (what was
deleted meanwhile goes with the snapshot). Each step is a method tests call.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from dpd import sdp, sdp_sync
from dpd.models import SdpWatcherState
from indexing import leader

logger = logging.getLogger(__name__)

SLOT = "sdp_flow_watcher"
RECONCILE_SECONDS = 1.0


class FlowWatcher:
    def __init__(self, holder: str | None = None, stop: threading.Event | None = None) -> None:
        self.holder = holder or leader.instance_name()
        self.stop = stop or threading.Event()
        self.lease: leader.Lease | None = None
        self.mirror: sdp_sync.Mirror | None = None
        self.connection: sdp.Connection | None = None
        self.changes: queue.Queue = queue.Queue()
        self.revision: int | None = None
        self._next_heartbeat = 0.0
        self._next_reconcile = 0.0
        self._since = None
        self._etcd_error: str | None = None

    @property
    def heartbeat_seconds(self) -> float:
        return max(settings.SDP_WATCHER_STALE_SECONDS / 6, 0.1)

    # -- the loop -------------------------------------------------------------------

    def run(self) -> None:
        """Until stopped: stand by until this instance holds the slot, then write."""
        try:
            while not self.stop.is_set():
                try:
                    if self.lease is None and not self.claim():
                        self.stop.wait(max(settings.SDP_WATCHER_STALE_SECONDS / 10, 0.1))
                        continue
                    self.lead()
                except leader.LostLeadership as exc:
                    logger.warning("sdp watcher: %s", exc)
                    self.lease = None
                    self.disconnect()
                except DatabaseError as exc:
                    logger.warning("sdp watcher: database error, retrying: %s", exc)
                    connection.close()
                    self.disconnect()
                    self.stop.wait(max(settings.SDP_WATCHER_RECONNECT_DELAY_SECONDS, 0.5))
                except Exception:
                    # A bug must not stop the service (runservice stops everything
                    # when a child exits): log it, start over from a snapshot.
                    logger.exception("sdp watcher: unexpected error, starting over")
                    self.disconnect()
                    self.stop.wait(max(settings.SDP_WATCHER_RECONNECT_DELAY_SECONDS, 0.5))
        finally:
            self.shutdown()

    def claim(self) -> bool:
        result = leader.claim(SLOT, self.holder, stale_seconds=settings.SDP_WATCHER_STALE_SECONDS)
        if not result.claimed:
            return False
        self.lease = result.lease
        taken = (
            f", taking over from {result.lease.previous_holder}" if result.lease.reclaimed else ""
        )
        logger.info("sdp watcher: %s writes flows%s", self.holder, taken)
        self._next_heartbeat = 0.0
        return True

    def lead(self) -> None:
        """Snapshot and watch until stopped; on an etcd failure, wait and start over."""
        while not self.stop.is_set():
            try:
                self.connect()
                self.follow()
            except sdp.EtcdUnavailable as exc:
                self.log_etcd_error(str(exc))
                self.disconnect()
                self.record(etcd_connected=False, watcher_connected=False, message=str(exc))
                self.pause(settings.SDP_WATCHER_RECONNECT_DELAY_SECONDS)

    def log_etcd_error(self, message: str) -> None:
        """A WARNING when etcd becomes unreachable (or fails differently), DEBUG
        while it stays so: an installation without etcd (the embedded default)
        would otherwise log the same line every reconnect delay, for ever.
        /status says the state at every moment."""
        repeated = message == self._etcd_error
        self._etcd_error = message
        level = logging.DEBUG if repeated else logging.WARNING
        logger.log(level, "sdp watcher: %s%s", message, " (still)" if repeated else "")

    def connect(self) -> None:
        """A new connection, a snapshot written, a watch from its revision."""
        self.disconnect()
        self.connection = sdp.Connection()
        snapshot = self.connection.snapshot()
        self.mirror = sdp_sync.Mirror.from_values(snapshot.values)
        sdp_sync.write_snapshot(self.mirror)
        self.revision = snapshot.revision
        self._since = timezone.now() - sdp_sync.RECONCILE_MARGIN
        self.changes = queue.Queue()
        self.connection.watch(snapshot.revision + 1, self.changes)
        self.record(etcd_connected=True, watcher_connected=True, message="", event=True)
        self._etcd_error = None
        logger.info(
            "sdp watcher: snapshot of revision %s: %s flows, %s processing blocks",
            snapshot.revision,
            len(self.mirror.flows),
            len(self.mirror.pbs),
        )

    def follow(self) -> None:
        """Apply watched changes until stopped; raises EtcdUnavailable."""
        quiet_since = time.monotonic()
        while not self.stop.is_set():
            batch = self._next_batch(timeout=min(self.heartbeat_seconds, RECONCILE_SECONDS))
            if batch:
                self.apply(batch)
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > settings.SDP_WATCHER_TIMEOUT_SECONDS:
                assert self.connection is not None
                self.connection.ping()  # raises when etcd stopped answering
                quiet_since = time.monotonic()
            self.tick()

    def _next_batch(self, timeout: float) -> list[sdp.Change]:
        """The changes waiting (at least one, or none after `timeout`)."""
        batch: list[sdp.Change] = []
        try:
            item: Any = self.changes.get(timeout=timeout)
            while True:
                if isinstance(item, Exception):
                    if batch:
                        self.apply(batch)
                    raise item
                batch.extend(item)
                item = self.changes.get_nowait()
        except queue.Empty:
            return batch

    def apply(self, batch: list[sdp.Change]) -> None:
        assert self.mirror is not None
        sdp_sync.write_changes(self.mirror, [(change.key, change.value) for change in batch])
        self.revision = max(self.revision or 0, *(change.revision for change in batch))
        self.record(etcd_connected=True, watcher_connected=True, message="", event=True)

    def tick(self, *, reconcile: bool = True) -> None:
        """Heartbeat (raises LostLeadership) and reconcile when due."""
        now = time.monotonic()
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.heartbeat_seconds
            if self.lease is not None:
                leader.heartbeat(self.lease)
            self.record()
        if reconcile and self.mirror is not None and now >= self._next_reconcile:
            self._next_reconcile = now + RECONCILE_SECONDS
            self._since = sdp_sync.reconcile_recent(self.mirror, self._since)

    def pause(self, seconds: float) -> None:
        """Wait, heartbeating, unless stopped."""
        deadline = time.monotonic() + seconds
        while not self.stop.is_set() and time.monotonic() < deadline:
            self.stop.wait(min(self.heartbeat_seconds, max(deadline - time.monotonic(), 0)))
            self.tick(reconcile=False)

    def disconnect(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def shutdown(self) -> None:
        self.disconnect()
        if self.lease is None:
            return
        try:
            self.record(etcd_connected=False, watcher_connected=False, message="stopped")
            leader.release(self.lease, step="idle", completed=False)
        except DatabaseError as exc:
            logger.warning("sdp watcher: could not release the slot: %s", exc)
        self.lease = None

    # -- what /status reads ---------------------------------------------------------

    def record(self, *, event: bool = False, **fields: Any) -> None:
        values: dict[str, Any] = {
            "holder": self.holder,
            "heartbeat": timezone.now(),
            "revision": self.revision,
            "flows": len(self.mirror.flows) if self.mirror is not None else 0,
            **fields,
        }
        if event:
            values["last_event_at"] = timezone.now()
        SdpWatcherState.objects.update_or_create(pk=1, defaults=values)


def watcher_status() -> dict[str, Any]:
    """/status `sdp_config_db`, from what the writing watcher last recorded."""
    return watcher_block(SdpWatcherState.objects.filter(pk=1).first())


def watcher_block(state: SdpWatcherState | None) -> dict[str, Any]:
    """/status `sdp_config_db` from the watcher's state row (None: no watcher
    ever wrote one); a writer whose heartbeat is older than the stale limit
    is not connected."""
    fresh = (
        state is not None
        and state.heartbeat is not None
        and (timezone.now() - state.heartbeat).total_seconds() <= settings.SDP_WATCHER_STALE_SECONDS
    )
    return {
        "connected": bool(fresh and state.etcd_connected),
        "watcher_connected": bool(fresh and state.watcher_connected),
        "number_of_flows": state.flows if state else 0,
        "revision": state.revision if state else None,
        "last_event_time": state.last_event_at.isoformat()
        if state and state.last_event_at
        else None,
        "watcher_instance": state.holder if fresh else None,
        "error": (state.message or None) if fresh and not state.etcd_connected else None,
    }
