"""django-q2 entry points for indexing, and the schedules declared in code.

The dotted paths of these functions are a public contract (queued tasks and
schedule rows name them). Each takes ids or plain values, calls a service, and
is safe to run twice: the ORM broker delivers at least once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from indexing import shutdown
from indexing.models import IndexRun
from indexing.services import index_run


def _summary(run: IndexRun | None) -> str:
    """The task's result, shown in the admin next to the schedule."""
    if run is None:
        return "nothing to do"
    detail = f": {run.failure_message}" if run.failure_message else ""
    return (
        f"run {run.pk} {run.status}{detail} (added={run.files_added} "
        f"updated={run.files_updated} skipped={run.files_skipped})"
    )


def _yield_cpu() -> None:
    """Lower this worker's CPU priority to INDEXING_NICENESS (once: niceness
    only goes up), so a run's parsing leaves the CPU to the API first. The
    parse processes started by the run inherit it."""
    current = os.nice(0)
    if current < settings.INDEXING_NICENESS:
        os.nice(settings.INDEXING_NICENESS - current)


def _in_worker(run: Callable[[], IndexRun | None]) -> str:
    """Run an index in this worker and return its summary.

    When a stop signal interrupted it and django-q2's sentinel is gone (the
    signal went to the whole process group, as systemd sends it, and the
    sentinel died of it), no STOP message will ever come: the worker leaves
    instead of waiting for one until it is killed. Otherwise it returns, its
    result is saved, and the cluster stops it as usual."""
    _yield_cpu()
    parent = os.getppid()
    summary = _summary(run())
    if shutdown.requested() and os.getppid() != parent:
        raise SystemExit(0)
    return summary


def run_requested_index(run_id: int) -> str:
    """Carry out a run queued by request_reindex (no-op unless still queued)."""
    return _in_worker(lambda: index_run(IndexRun.Trigger.API, run_id=run_id))


def startup_index(requested_at: str | None = None) -> str:
    """Start-up indexing: lead, or watch the leader and take over if it dies.
    Skipped if a run completed after this instance asked for it."""
    moment = parse_datetime(requested_at) if requested_at else timezone.now()
    return _in_worker(lambda: index_run(IndexRun.Trigger.STARTUP, wait=True, requested_at=moment))


def scheduled_index() -> str:
    """The periodic incremental re-index; a follower just skips."""
    return _in_worker(lambda: index_run(IndexRun.Trigger.SCHEDULE))


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    func: str
    minutes: int  # 0 disables (the row is removed)


def declared_schedules() -> list[ScheduleSpec]:
    """Every schedule this project runs; rows are upserted by name."""
    return [
        ScheduleSpec(
            name="indexing: periodic re-index",
            func="indexing.tasks.scheduled_index",
            minutes=settings.INDEXING_SCHEDULE_MINUTES,
        )
    ]


def sync_schedules() -> list[str]:
    """Upsert the declared schedules by name (delete disabled ones); returns
    one line per schedule for the caller to print."""
    from django_q.models import Schedule

    lines = []
    for spec in declared_schedules():
        if spec.minutes <= 0:
            deleted, _ = Schedule.objects.filter(name=spec.name).delete()
            lines.append(f"{spec.name}: disabled" + (" (removed)" if deleted else ""))
            continue
        _, created = Schedule.objects.update_or_create(
            name=spec.name,
            defaults={
                "func": spec.func,
                "schedule_type": Schedule.MINUTES,
                "minutes": spec.minutes,
                "repeats": -1,
            },
            create_defaults={
                "func": spec.func,
                "schedule_type": Schedule.MINUTES,
                "minutes": spec.minutes,
                "repeats": -1,
                "next_run": timezone.now() + timedelta(minutes=spec.minutes),
            },
        )
        lines.append(
            f"{spec.name}: every {spec.minutes} min ({'created' if created else 'updated'})"
        )
    return lines


def queue_startup_index(requested_at: datetime) -> None:
    """Queue this instance's start-up indexing (runservice calls it once)."""
    from django_q.tasks import async_task

    async_task(
        "indexing.tasks.startup_index",
        requested_at.isoformat(),
        task_name=f"startup-index-{requested_at:%Y%m%dT%H%M%S%f}",
    )
