"""django-q2 entry points of the DLM bridge (dotted paths are a contract)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

SCHEDULE_NAME = "dlm: mirror sync"
SYNC_TASK = "dlm_bridge.tasks.sync_dlm"


def sync_dlm() -> str:
    """One mirror sync (idempotent: a second one at the same time skips; the
    django-q2 worker closes stale connections around each task)."""
    from dlm_bridge.sync import sync_items

    result = sync_items()
    return (
        f"items={result.items} written={result.written} removed={result.removed} "
        f"skipped={result.skipped}" + (f" error={result.error}" if result.error else "")
    )


def prepare_background_work() -> list[str]:
    """Upsert the sync's schedule (or remove it: DLM off, or DLM_SYNC_MINUTES=0)
    and queue a sync now; runservice calls it once per service start."""
    from django_q.models import Schedule
    from django_q.tasks import async_task

    minutes = settings.DLM_SYNC_MINUTES
    if not settings.SKA_DATAPRODUCT_DLM_INTERFACE_ENABLED or minutes <= 0:
        deleted, _ = Schedule.objects.filter(name=SCHEDULE_NAME).delete()
        if settings.SKA_DATAPRODUCT_DLM_INTERFACE_ENABLED:
            return [f"{SCHEDULE_NAME}: disabled" + (" (removed)" if deleted else "")]
        # Off: the rows an instance with it on mirrored go.
        from dpd.models import DLM_SOURCES, DataProduct

        DataProduct.objects.filter(source__in=DLM_SOURCES).delete()
        return [f"{SCHEDULE_NAME}: DLM interface disabled" + (" (removed)" if deleted else "")]
    defaults = {
        "func": SYNC_TASK,
        "schedule_type": Schedule.MINUTES,
        "minutes": minutes,
        "repeats": -1,
    }
    _, created = Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults=defaults,
        create_defaults={**defaults, "next_run": timezone.now() + timedelta(minutes=minutes)},
    )
    async_task(SYNC_TASK, task_name=f"dlm-sync-{timezone.now():%Y%m%dT%H%M%S%f}")
    return [
        f"{SCHEDULE_NAME}: every {minutes} min ({'created' if created else 'updated'}), "
        "one queued now"
    ]
