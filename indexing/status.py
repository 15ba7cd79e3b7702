"""The indexing blocks of GET /status (reference 2.1), read from our own tables.

Health probes call /status every few seconds with a 5 s timeout, so each block
costs one query, and a database that is down gives the idle defaults instead
of an exception (the view reports the database itself).

A run whose heartbeat is older than INDEXING_STALLED_SECONDS (a few batch
intervals) is not reported as running: `indexing_step` says `stalled`, and
the additive `indexing.stalled` block says who holds the slot, since when it
has been silent, and when another instance may take it over.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Exists, QuerySet
from django.utils import timezone

from indexing.indexer import parallel_workers
from indexing.leader import volume_prefix
from indexing.models import IndexingState, IndexRun

logger = logging.getLogger(__name__)

IDLE_PROGRESS = {
    "files_processed": 0,
    "total_files": 0,
    "files_added": 0,
    "files_updated": 0,
    "files_skipped": 0,
    "indexing_step": "idle",
}


def _iso(moment) -> str | None:
    return moment.isoformat() if moment else None


def stalled_after() -> int:
    """Seconds without a heartbeat after which a run counts as stalled: the
    setting, at most the stale limit (past it the slot is up for takeover)."""
    return min(settings.INDEXING_STALLED_SECONDS, settings.INDEXING_HEARTBEAT_STALE_SECONDS)


def _is_live(state: IndexingState) -> bool:
    """Running with a recent heartbeat: a silent leader's slot is not progress."""
    if not state.indexing_running or state.last_heartbeat is None:
        return False
    return state.last_heartbeat >= timezone.now() - timedelta(seconds=stalled_after())


def stalled_block(state: IndexingState | None) -> dict[str, Any] | None:
    """Who holds a slot that stopped heartbeating, and when it can be taken
    over; None when no run is stalled."""
    if state is None or not state.indexing_running or _is_live(state):
        return None
    now = timezone.now()
    stale = settings.INDEXING_HEARTBEAT_STALE_SECONDS
    beat = state.last_heartbeat or state.started_at or now
    takeover_at = beat + timedelta(seconds=stale)
    process = state.holder_process or {}
    return {
        "indexed_by": state.indexed_by or None,
        "holder_host": process.get("host"),
        "holder_pid": process.get("pid"),
        "last_heartbeat": _iso(state.last_heartbeat),
        "seconds_since_heartbeat": round((now - beat).total_seconds(), 1),
        "stalled_after_seconds": stalled_after(),
        # Any instance may claim the slot from then on; a restart on the
        # holder's own host (holder_host) takes it at once (docs/indexing.md).
        "takeover_at": _iso(takeover_at),
        "takeover_due": takeover_at <= now,
    }


def queued_runs(prefix: str) -> QuerySet[IndexRun]:
    """This volume's runs waiting for the worker."""
    return IndexRun.objects.filter(status=IndexRun.Status.QUEUED, volume_prefix=prefix)


def indexing_status() -> dict[str, Any]:
    """The `indexing` block: in_progress, progress, coordination_state."""
    prefix = volume_prefix()
    queued = queued_runs(prefix)
    try:
        state = (
            IndexingState.objects.filter(volume_prefix=prefix)
            .annotate(has_queued=Exists(queued))
            .first()
        )
        # Never indexed yet: a request may be waiting for the worker.
        has_queued = state.has_queued if state is not None else queued.exists()
    except DatabaseError as exc:
        logger.debug("indexing status unavailable: %s", exc)
        return indexing_block(None, False)
    return indexing_block(state, has_queued)


def indexing_block(state: IndexingState | None, has_queued: bool) -> dict[str, Any]:
    """The `indexing` block from this volume's state row (None: never
    indexed) and whether a run is queued for it; read by indexing_status()
    or, for /status, with everything else it shows (dpd.status_rows)."""
    coordination = {
        "volume_prefix": volume_prefix(),
        "indexed_by": None,
        "indexing_running": False,
        "started_at": None,
        "last_heartbeat": None,
        "completed_at": None,
        "files_indexed": 0,
    }
    block = {
        "in_progress": has_queued,
        "progress": dict(IDLE_PROGRESS),
        "coordination_state": coordination,
        "stalled": None,
    }
    if state is None:
        return block
    live = _is_live(state)
    block["in_progress"] = live or has_queued
    block["progress"] = {
        "files_processed": state.files_processed,
        "total_files": state.total_files,
        "files_added": state.files_added,
        "files_updated": state.files_updated,
        "files_skipped": state.files_skipped,
        # A leader that stopped heartbeating left its last step behind.
        "indexing_step": state.indexing_step if live or not state.indexing_running else "stalled",
    }
    block["stalled"] = stalled_block(state)
    coordination.update(
        indexed_by=state.indexed_by or None,
        indexing_running=live,
        started_at=_iso(state.started_at),
        last_heartbeat=_iso(state.last_heartbeat),
        completed_at=_iso(state.completed_at),
        files_indexed=state.files_indexed,
    )
    return block


def pv_index_config() -> dict[str, Any]:
    """The indexing fields of `pv_interface_status` with no run known: the
    configuration, and nulls where the last run's figures go (also what
    /status shows when the database cannot be read)."""
    return {
        "last_index_duration": None,
        "index_time_modified": None,
        "indexing_timeout_seconds": settings.INDEXING_TIMEOUT_SECONDS,
        "indexing_batch_size": settings.INDEXING_BATCH_SIZE,
        # What the service's (background) runs use, not the 0 that means "auto".
        "indexing_parallel_workers": parallel_workers(),
        "indexing_work_unit_depth": settings.INDEXING_WORK_UNIT_DEPTH,
        "last_index_run": None,
    }


# What the `pv_interface_status` block shows of the last run.
LAST_RUN_FIELDS = (
    "duration",
    "terminal_timestamp",
    "timed_out",
    "work_units",
    "files_added",
    "files_updated",
)


def last_runs(prefix: str) -> QuerySet[IndexRun]:
    """This volume's runs that finished indexing (completed or timed out),
    the last first."""
    return IndexRun.objects.filter(
        volume_prefix=prefix,
        status__in=[IndexRun.Status.COMPLETED, IndexRun.Status.TIMEOUT],
    ).order_by("-terminal_timestamp", "-pk")


def pv_index_status() -> dict[str, Any]:
    """The indexing fields of `pv_interface_status`, from the last run that
    finished indexing."""
    try:
        run = last_runs(volume_prefix()).only(*LAST_RUN_FIELDS).first()
    except DatabaseError as exc:
        logger.debug("last index run unavailable: %s", exc)
        return pv_index_config()
    return pv_index_block(run)


def pv_index_block(run: IndexRun | None) -> dict[str, Any]:
    """The indexing fields of `pv_interface_status` from the last run (None:
    none finished yet), with LAST_RUN_FIELDS read."""
    block = pv_index_config()
    if run is None:
        return block
    block["last_index_duration"] = str(run.duration) if run.duration is not None else None
    block["index_time_modified"] = _iso(run.terminal_timestamp)
    block["last_index_run"] = {
        "timed_out": run.timed_out,
        "work_units": run.work_units,
        "files_ingested": run.files_added + run.files_updated,
    }
    return block
