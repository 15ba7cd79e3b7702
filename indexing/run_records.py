"""How an index run's outcome is written: completed, timed out, failed,
interrupted by a stop request, or closed because nobody will finish it.

Each outcome updates the IndexRun (only while it is still active: another
instance may have closed it) and releases the slot in one transaction, and is
retried while the database comes back from a restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction

from indexing import leader
from indexing.indexer import IndexProgress, IndexResult, VolumeUnavailable
from indexing.models import IndexRun

logger = logging.getLogger(__name__)

# Waits between attempts to record a failure once the database is back
# (a PostgreSQL restart takes a few seconds); about 30 s in all.
RECORD_RETRY_DELAYS = (0.5, 1, 2, 4, 8, 15)


def close(run: IndexRun, message: str) -> int:
    """Conditionally end one active run (a live instance may finish it first)."""
    expected = run.status
    run.add_log(message)
    run.finish(IndexRun.Status.ERROR, message=message)
    return IndexRun.objects.filter(pk=run.pk, status=expected).update(
        status=run.status,
        terminal_timestamp=run.terminal_timestamp,
        duration=run.duration,
        failure_message=run.failure_message,
        log=run.log,
        indexing_step="error",
    )


def progress_fields(progress: IndexProgress) -> dict[str, object]:
    """The progress columns shared by IndexingState and IndexRun."""
    return {
        "indexing_step": progress.step,
        "files_processed": progress.files_processed,
        "files_added": progress.files_added,
        "files_updated": progress.files_updated,
        "files_skipped": progress.files_skipped,
    }


def record_result(lease: leader.Lease, run: IndexRun, result: IndexResult) -> None:
    status = IndexRun.Status.TIMEOUT if result.timed_out else IndexRun.Status.COMPLETED
    run.errors = [{"path": path, "reason": reason} for path, reason in result.errors][
        : IndexRun.ERROR_LIMIT
    ]
    run.add_log(
        f"{status}: found={result.files_found} added={result.files_added} "
        f"updated={result.files_updated} skipped={result.files_skipped} "
        f"removed={result.files_removed} errors={len(result.errors)}"
    )
    if result.timed_out:
        run.add_log(
            f"stopped at INDEXING_TIMEOUT_SECONDS={settings.INDEXING_TIMEOUT_SECONDS}; "
            "nothing was removed"
        )
    run.finish(status)
    outcome = {
        "status": run.status,
        "terminal_timestamp": run.terminal_timestamp,
        "duration": run.duration,
        "timed_out": result.timed_out,
        "errors": run.errors,
        "log": run.log,
        "files_found": result.files_found,
        "files_removed": result.files_removed,
        "work_units": result.work_units,
        **progress_fields(result),
    }
    for name, value in outcome.items():
        setattr(run, name, value)
    counts = progress_fields(result)
    del counts["indexing_step"]

    def write() -> None:
        with transaction.atomic():
            IndexRun.objects.filter(pk=run.pk, status=IndexRun.Status.RUNNING).update(**outcome)
            leader.release(
                lease,
                step=run.status,
                completed=True,
                files_indexed=result.files_processed,
                total_files=result.files_found,
                **counts,
            )

    record_with_retry(write)


def failure_message(exc: BaseException) -> str:
    if isinstance(exc, OperationalError | InterfaceError):
        return f"The database connection was lost during the run: {exc}".strip()
    if isinstance(exc, VolumeUnavailable):
        return f"The volume is unavailable: {exc}"
    if isinstance(exc, leader.LostLeadership):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def record_failure(
    lease: leader.Lease, run: IndexRun, exc: BaseException, last: IndexProgress | None
) -> None:
    message = failure_message(exc)
    if last is not None:
        for name, value in progress_fields(last).items():
            setattr(run, name, value)
        run.errors = [{"path": path, "reason": reason} for path, reason in last.errors][
            : IndexRun.ERROR_LIMIT
        ]

    run.add_log(f"error: {message}")
    run.finish(IndexRun.Status.ERROR, message=message)
    run.indexing_step = "error"

    def record() -> None:
        with transaction.atomic():
            close_running(run, message)
            if not isinstance(exc, leader.LostLeadership):
                leader.release(lease, step="error", completed=False)

    record_with_retry(record)


def record_interrupted(
    lease: leader.Lease, run: IndexRun, reason: str, last: IndexProgress | None
) -> None:
    """The process was asked to stop: end the run at this batch boundary with
    its counts (every batch counted is committed) and free the slot at once,
    so the next run, here or on another instance, starts without waiting."""
    if last is not None:
        for name, value in progress_fields(last).items():
            setattr(run, name, value)
        run.errors = [{"path": path, "reason": reason} for path, reason in last.errors][
            : IndexRun.ERROR_LIMIT
        ]
    message = (
        f"Interrupted: {reason}; the service was stopping. {run.files_processed} files were "
        "processed; the next run skips those it wrote."
    )
    run.add_log(
        f"interrupted ({reason}): found={last.files_found if last else 0} "
        f"added={run.files_added} updated={run.files_updated} skipped={run.files_skipped}"
    )
    run.finish(IndexRun.Status.INTERRUPTED, message=message)
    run.indexing_step = IndexRun.Status.INTERRUPTED
    counts = progress_fields(last) if last is not None else {}
    counts.pop("indexing_step", None)

    def record() -> None:
        with transaction.atomic():
            close_running(run, message)
            leader.release(lease, step=IndexRun.Status.INTERRUPTED, completed=False, **counts)

    record_with_retry(record)


def close_running(run: IndexRun, message: str) -> None:
    IndexRun.objects.filter(pk=run.pk, status=IndexRun.Status.RUNNING).update(
        status=run.status,
        terminal_timestamp=run.terminal_timestamp,
        duration=run.duration,
        failure_message=message,
        errors=run.errors,
        log=run.log,
        indexing_step=run.indexing_step,
    )


def record_with_retry(write: Callable[[], object]) -> bool:
    """Write an outcome, waiting for the database to come back if it went away
    (e.g. PostgreSQL restarting). Gives up after RECORD_RETRY_DELAYS: the run
    is then closed as abandoned when its heartbeat is found stale."""
    for delay in (0, *RECORD_RETRY_DELAYS):
        time.sleep(delay)
        try:
            write()
            return True
        except (OperationalError, InterfaceError) as exc:
            logger.warning("database unavailable while recording an index run: %s", exc)
            if not connection.in_atomic_block:
                connection.close()  # the next query reconnects
    logger.error("gave up recording an index run outcome: the database stayed unavailable")
    return False
