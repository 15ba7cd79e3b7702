"""Indexing services: request a run, run one under the leadership rules.

Every way of indexing (start-up, the periodic schedule, GET
/reindexdataproducts, the admin action, `manage.py reindex`) ends in
`index_run()`: claim the volume's slot, record an IndexRun, call the indexer
with a heartbeat after every batch and the INDEXING_TIMEOUT_SECONDS deadline,
record the outcome, release the slot. An instance that cannot claim the slot
records a `skipped` run naming the leader and serves the shared tables. A
process asked to stop (SIGTERM) ends its run at the next batch boundary as
`interrupted` (indexing/shutdown.py); run_records.py writes every outcome.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models.functions import Now
from django.utils import timezone

from indexing import leader, shutdown
from indexing.holder import gone_reason
from indexing.indexer import IndexProgress, VolumeUnavailable, index_volume, parallel_workers
from indexing.models import IndexingState, IndexRun
from indexing.run_records import (
    close,
    failure_message,
    progress_fields,
    record_failure,
    record_interrupted,
    record_result,
    record_with_retry,
)

logger = logging.getLogger(__name__)

# The longest pause between two looks at the slot by a follower's start-up
# task (two small queries each).
WATCH_POLL_SECONDS = 1.0


class IndexingBusy(Exception):
    """A run is already queued or in progress for this volume (the API answers 409)."""


@dataclass(frozen=True)
class RunTicket:
    """What a caller gets back for a requested run."""

    run_id: int | None


def request_reindex(trigger: str = IndexRun.Trigger.API) -> RunTicket:
    """Queue a run for the django-q2 worker; raise IndexingBusy while one is
    queued or running. The queued row and its task commit together, and the
    partial unique constraint on active runs refuses a concurrent second one."""
    prefix = leader.volume_prefix()
    close_abandoned_runs(prefix)
    if leader.is_busy(prefix):
        raise IndexingBusy(f"A re-index is already in progress ({leader.current_leader(prefix)}).")
    from django_q.tasks import async_task

    try:
        with transaction.atomic():
            run = IndexRun(trigger=trigger, volume_prefix=prefix)
            run.add_log(f"queued ({trigger})")
            run.save()
            async_task(
                "indexing.tasks.run_requested_index", run.pk, task_name=f"index-run-{run.pk}"
            )
    except IntegrityError:
        raise IndexingBusy("A re-index is already in progress.") from None
    return RunTicket(run_id=run.pk)


def leader_watch() -> RunTicket | None:
    """runservice's periodic step: queue a run for any free worker when the
    volume needs one and nobody will start it. A start-up task may be stuck
    behind the dead leader's run in its worker (one shared queue); this needs
    no task. Instances seeing it together queue one run between them.

    - The leader stopped heartbeating mid-run, or its process is proven gone
      from this machine (indexing/holder.py): a takeover run.
    - The last run was interrupted by its service stopping, and no start-up
      run took its place: the run that continues it.
    """
    prefix = leader.volume_prefix()
    stale = settings.INDEXING_HEARTBEAT_STALE_SECONDS
    state = IndexingState.objects.filter(volume_prefix=prefix).first()
    if state is None:
        return None
    if state.indexing_running:
        fresh = state.last_heartbeat and state.last_heartbeat >= timezone.now() - timedelta(
            seconds=stale
        )
        if fresh and not gone_reason(state.holder_process, state.lease):
            return None
        why = "the indexing leader stopped heartbeating or its process is gone"
    elif state.indexing_step == IndexRun.Status.INTERRUPTED:
        why = "the last run was interrupted by a stopping service"
    else:
        return None
    try:
        ticket = request_reindex(IndexRun.Trigger.TAKEOVER)
    except IndexingBusy:
        return None  # another instance queued it, or a watcher already took over
    logger.warning("%s: queued run %s", why, ticket.run_id)
    return ticket


def close_abandoned_runs(prefix: str) -> int:
    """Mark as `error` the runs nobody will finish: running ones whose
    heartbeat went stale (their instance died) and queued ones older than the
    broker's redelivery delay (their task is lost). Returns how many."""
    stale = settings.INDEXING_HEARTBEAT_STALE_SECONDS
    closed = 0
    running = IndexRun.objects.filter(
        volume_prefix=prefix,
        status=IndexRun.Status.RUNNING,
        last_heartbeat__lt=leader.stale_before(stale),
    )
    for run in running:
        closed += close(
            run,
            f"Abandoned: the instance running it ({run.indexed_by}) stopped heartbeating "
            f"for over {stale} s (killed or disconnected).",
        )
    lost_before = timezone.now() - timedelta(seconds=settings.Q_CLUSTER["retry"])
    for run in IndexRun.objects.filter(
        volume_prefix=prefix, status=IndexRun.Status.QUEUED, created__lt=lost_before
    ):
        closed += close(run, "Abandoned: no worker picked up the queued run.")
    return closed


def index_run(
    trigger: str,
    *,
    run_id: int | None = None,
    force: bool = False,
    wait: bool = False,
    requested_at: datetime | None = None,
    on_progress: Callable[[IndexProgress], None] | None = None,
    configured_root: str | None = None,
) -> IndexRun | None:
    """Run the indexer if this instance wins the volume's slot, and record it.

    - `run_id`: a queued run to carry out (from request_reindex); anything but
      `queued` means the task was delivered twice: nothing is done.
    - `force`: take the slot even from a live-looking holder (recovery).
    - `wait`: while another instance leads, watch it; take over if its
      heartbeat goes stale, stop if it completes (start-up indexing).
    - `requested_at`: skip if a run completed after this moment (the one in
      progress when the caller asked, or a later one): followers then serve
      the index the leader just built instead of scanning again.
    - `configured_root`: another volume than PERSISTENT_STORAGE_PATH (its own slot).
    Never raises for indexing failures: they end the run with status `error`.
    SIGTERM or SIGINT ends it at the next batch boundary as `interrupted`.
    """
    with shutdown.stop_on_signals():
        return _index_run(
            trigger,
            run_id=run_id,
            force=force,
            wait=wait,
            requested_at=requested_at,
            on_progress=on_progress,
            configured_root=configured_root,
        )


def _index_run(
    trigger: str,
    *,
    run_id: int | None,
    force: bool,
    wait: bool,
    requested_at: datetime | None,
    on_progress: Callable[[IndexProgress], None] | None,
    configured_root: str | None,
) -> IndexRun | None:
    prefix = leader.volume_prefix(configured_root)
    holder = leader.instance_name()
    run = None
    if run_id is not None:
        run = IndexRun.objects.filter(pk=run_id).first()
        if run is None or run.status != IndexRun.Status.QUEUED:
            return run
        trigger = run.trigger  # e.g. a takeover run, carried out by the generic task
    try:
        result, fresh = _claim_unless_indexed(prefix, holder, requested_at, force=force)
        if fresh is None and not result.claimed and wait:
            result, fresh = _watch_leader(prefix, holder, requested_at)
        if fresh is None and not result.claimed and shutdown.requested():
            message = (
                f"Interrupted: {shutdown.requested()} received while waiting for "
                f"{result.leader}'s run; the service was stopping."
            )
            return _record_skipped(run, trigger, prefix, holder, message)
        if fresh is not None:
            message = (
                f"Another instance ({fresh.indexed_by}) indexed the volume after this "
                f"request (run {fresh.pk})."
            )
            return _record_skipped(run, trigger, prefix, holder, message)
        if not result.claimed:
            message = f"Another instance ({result.leader}) is indexing the volume."
            return _record_skipped(run, trigger, prefix, holder, message)
    except DatabaseError as exc:
        # The database is down before anything started: end a queued run if we can.
        message = failure_message(exc)
        if run is not None:
            record_with_retry(lambda: close(run, message))
        logger.error("index run (%s) could not start: %s", trigger, exc)
        return run
    return _lead(result.lease, run, trigger, on_progress=on_progress, root=configured_root)


def _claim_unless_indexed(
    prefix: str, holder: str, moment: datetime | None, *, force: bool = False
) -> tuple[leader.ClaimResult, IndexRun | None]:
    """Claim the slot unless a run completed since `moment` (then return it).

    The slot's row stays locked from the look to the claim: a leader
    completing in between (its run and its slot are written in one commit)
    waits for us, so we either see its run or find the slot still held. Without
    the lock, a follower that looked just before the leader's commit claimed
    the slot it freed and scanned the volume again. (SQLite: the transaction
    is IMMEDIATE, so it holds the database's write lock instead.)"""
    if moment is None:
        return leader.claim(prefix, holder, force=force), None
    with transaction.atomic():
        list(IndexingState.objects.select_for_update().filter(volume_prefix=prefix))
        fresh = _completed_since(prefix, moment)
        if fresh is not None:
            return leader.ClaimResult(None, fresh.indexed_by), fresh
        return leader.claim(prefix, holder, force=force), None


def _completed_since(prefix: str, moment: datetime) -> IndexRun | None:
    return (
        IndexRun.objects.filter(
            volume_prefix=prefix, status=IndexRun.Status.COMPLETED, terminal_timestamp__gte=moment
        )
        .order_by("-terminal_timestamp")
        .first()
    )


def _watch_leader(
    prefix: str, holder: str, requested_at: datetime | None
) -> tuple[leader.ClaimResult, IndexRun | None]:
    """Poll the slot while another instance leads: claim it as soon as the
    leader's heartbeat is stale or its process is proven gone, give up once it
    completed for us. Polls at most WATCH_POLL_SECONDS apart (a twentieth of a
    shorter stale limit, which keeps takeover within 1.05 x the limit): at a
    twentieth of the default 300 s, a follower went on watching for up to
    15 s after the run it waited for had completed."""
    stale = settings.INDEXING_HEARTBEAT_STALE_SECONDS
    poll = min(max(stale / 20, 0.1), WATCH_POLL_SECONDS)
    # A live leader stops by its timeout; after that plus the stale limit it is gone.
    give_up = time.monotonic() + settings.INDEXING_TIMEOUT_SECONDS + stale
    since = requested_at or timezone.now()
    while True:
        if shutdown.sleep(poll):  # the service is stopping: stop watching
            return leader.ClaimResult(None, leader.current_leader(prefix)), None
        result, fresh = _claim_unless_indexed(prefix, holder, since)
        if fresh is not None or result.claimed or time.monotonic() > give_up:
            return result, fresh


def _record_skipped(
    run: IndexRun | None, trigger: str, prefix: str, holder: str, message: str
) -> IndexRun:
    """A follower's record: it did not scan, and says who did."""
    logger.info("index run (%s) skipped: %s", trigger, message)
    if run is None:
        run = IndexRun(trigger=trigger, volume_prefix=prefix, started=timezone.now())
    run.indexed_by = holder
    run.add_log(f"skipped by {holder}: {message}")
    run.finish(IndexRun.Status.SKIPPED, message=message)
    if run.pk is None:
        run.save()
    else:
        IndexRun.objects.filter(pk=run.pk, status=IndexRun.Status.QUEUED).update(
            status=run.status,
            indexed_by=holder,
            terminal_timestamp=run.terminal_timestamp,
            failure_message=message,
            log=run.log,
        )
    return run


def _lead(
    lease: leader.Lease,
    run: IndexRun | None,
    trigger: str,
    *,
    on_progress: Callable[[IndexProgress], None] | None,
    root: str | None,
) -> IndexRun | None:
    queued = run
    try:
        run = _start_run(lease, run, trigger)
    except Exception as exc:
        logger.exception("index run (%s) could not be recorded", trigger)
        message = failure_message(exc)
        record_with_retry(lambda: leader.release(lease, step="error", completed=False))
        if queued is not None:
            record_with_retry(lambda: close(queued, message))
        return queued
    if run is None:  # another instance carried out our queued run already
        leader.release(lease, step="idle", completed=False)
        return None
    reporter = _ProgressReporter(lease, run, on_progress)
    deadline = time.monotonic() + settings.INDEXING_TIMEOUT_SECONDS
    try:
        result = index_volume(
            root,
            on_progress=reporter,
            deadline=deadline,
            workers=_workers(trigger),
            bulk_load=_foreground(trigger),
        )
    except shutdown.StopRequested as stop:
        logger.warning("index run %s interrupted at a batch boundary: %s", run.pk, stop)
        record_interrupted(lease, run, str(stop), reporter.last)
        return run
    except Exception as exc:  # recorded on the run: a worker must never crash on a run
        if isinstance(exc, VolumeUnavailable | leader.LostLeadership | DatabaseError):
            logger.error("index run %s failed: %s", run.pk, exc)
        else:
            logger.exception("index run %s failed", run.pk)
        record_failure(lease, run, exc, reporter.last)
        return run
    record_result(lease, run, result)
    return run


def _start_run(lease: leader.Lease, run: IndexRun | None, trigger: str) -> IndexRun | None:
    """Turn our claim into a running IndexRun: the given queued run, else the
    oldest queued one (a request waiting for the worker is served by this run),
    else a new one. Runs left `running` by an earlier holder are closed."""
    now = timezone.now()
    if lease.reclaimed:
        note = (
            f"Ended: {lease.previous_holder} lost the indexing slot ({lease.reason}; "
            f"reclaimed by {lease.holder})."
        )
    else:
        note = f"Ended: the indexing slot was taken by {lease.holder}."
    for stale_run in IndexRun.objects.filter(
        volume_prefix=lease.volume_prefix, status=IndexRun.Status.RUNNING
    ):
        close(stale_run, note)
    begin = {"status": IndexRun.Status.RUNNING, "started": now, "indexed_by": lease.holder}
    for _ in range(3):
        candidate = run or (
            IndexRun.objects.filter(
                volume_prefix=lease.volume_prefix, status=IndexRun.Status.QUEUED
            )
            .order_by("created", "pk")
            .first()
        )
        if candidate is not None:
            candidate.add_log(_started_line(lease, trigger))
            adopted = IndexRun.objects.filter(
                pk=candidate.pk, status=IndexRun.Status.QUEUED
            ).update(last_heartbeat=Now(), log=candidate.log, **begin)
            if adopted:
                candidate.refresh_from_db()
                break
            if run is not None:
                return None
            continue
        try:
            with transaction.atomic():
                candidate = IndexRun(trigger=trigger, volume_prefix=lease.volume_prefix, **begin)
                candidate.last_heartbeat = now
                candidate.add_log(_started_line(lease, trigger))
                candidate.save()
            break
        except IntegrityError:
            continue  # a request queued a run meanwhile: adopt it
    else:
        raise RuntimeError("could not record the index run")
    if lease.reclaimed:
        candidate.add_log(f"took over the slot from {lease.previous_holder} ({lease.reason})")
        IndexRun.objects.filter(pk=candidate.pk).update(log=candidate.log)
    leader.heartbeat(lease, run=candidate)
    return candidate


def _foreground(trigger: str) -> bool:
    """The operator's `manage.py reindex`: it may bulk-load an empty catalogue
    and takes every core; background runs keep the search indexes and leave a
    core to the searches they serve."""
    return trigger == IndexRun.Trigger.COMMAND


def _workers(trigger: str) -> int:
    return parallel_workers(background=not _foreground(trigger))


def _started_line(lease: leader.Lease, trigger: str) -> str:
    niceness = os.nice(0)  # background runs yield the CPU (INDEXING_NICENESS)
    workers = _workers(trigger)
    return (
        f"started by {lease.holder} ({trigger}), {workers} parse "
        f"process{'es' if workers > 1 else ''}" + (f", CPU niceness {niceness}" if niceness else "")
    )


class _ProgressReporter:
    """The indexer's on_progress: heartbeat + live progress after every batch."""

    def __init__(
        self,
        lease: leader.Lease,
        run: IndexRun,
        outer: Callable[[IndexProgress], None] | None,
    ) -> None:
        self.lease = lease
        self.run = run
        self.outer = outer
        self.last: IndexProgress | None = None

    def __call__(self, progress: IndexProgress) -> None:
        self.last = progress
        counts = progress_fields(progress)
        # One line per batch: what an operator tails (or a log system indexes, LOG_FORMAT=json).
        logger.info(
            "index run %s: %s of %s files processed (added=%s updated=%s skipped=%s) %s",
            self.run.pk,
            progress.files_processed,
            progress.files_found,
            progress.files_added,
            progress.files_updated,
            progress.files_skipped,
            progress.step,
            extra={"run_id": self.run.pk, "files_found": progress.files_found, **counts},
        )
        # Raises LostLeadership when the slot was reclaimed: the run stops.
        leader.heartbeat(self.lease, total_files=progress.files_found, **counts)
        IndexRun.objects.filter(pk=self.run.pk, status=IndexRun.Status.RUNNING).update(
            last_heartbeat=Now(),
            files_found=progress.files_found,
            files_removed=progress.files_removed,
            work_units=progress.work_units,
            **counts,
        )
        if self.outer is not None:
            self.outer(progress)
        # A batch boundary: everything counted so far is committed.
        shutdown.check()
        if settings.INDEXING_TEST_BATCH_DELAY_SECONDS:
            shutdown.sleep(settings.INDEXING_TEST_BATCH_DELAY_SECONDS)
            shutdown.check()
