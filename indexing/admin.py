"""Curators' view of indexing: the shared state, the run history (both
read-only), the periodic schedule with its last result, and a "re-index now"
action that queues a run exactly as GET /reindexdataproducts does."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import OuterRef, Subquery
from django.template.defaultfilters import truncatechars
from django_q.admin import ScheduleAdmin
from django_q.models import Schedule, Task

from indexing.models import IndexingState, IndexRun
from indexing.services import IndexingBusy, request_reindex
from indexing.tasks import declared_schedules


def _reindex_now(request) -> None:
    try:
        ticket = request_reindex(IndexRun.Trigger.ADMIN)
    except IndexingBusy as exc:
        messages.warning(request, str(exc))
    else:
        messages.success(request, f"Re-index queued as run {ticket.run_id}.")


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by the indexer; the admin shows them."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(IndexingState)
class IndexingStateAdmin(ReadOnlyAdmin):
    list_display = (
        "volume_prefix",
        "indexing_running",
        "indexed_by",
        "holder",
        "indexing_step",
        "files_processed",
        "total_files",
        "started_at",
        "last_heartbeat",
        "completed_at",
        "files_indexed",
    )
    actions = ["reindex_now"]

    @admin.display(description="holder process")
    def holder(self, state: IndexingState) -> str:
        process = state.holder_process or {}
        return f"pid {process['pid']} on {process.get('host')}" if process.get("pid") else "-"

    @admin.action(description="Re-index the volume now")
    def reindex_now(self, request, queryset) -> None:
        _reindex_now(request)


@admin.register(IndexRun)
class IndexRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "created",
        "trigger",
        "status",
        "indexed_by",
        "files_added",
        "files_updated",
        "files_skipped",
        "files_removed",
        "error_count",
        "duration",
        "short_failure",
    )
    list_filter = ("status", "trigger", "timed_out")
    search_fields = ("indexed_by", "failure_message")
    date_hierarchy = "created"
    actions = ["reindex_now"]

    @admin.display(description="errors")
    def error_count(self, run: IndexRun) -> int:
        return len(run.errors or [])

    @admin.display(description="failure")
    def short_failure(self, run: IndexRun) -> str:
        return truncatechars(run.failure_message, 80)

    @admin.action(description="Re-index the volume now (a new run)")
    def reindex_now(self, request, queryset) -> None:
        _reindex_now(request)


class DeclaredScheduleAdmin(ScheduleAdmin):
    """django-q2's schedule admin plus the last task's result and a run-now
    action. Rows are upserted from code (`manage.py sync_schedules`)."""

    list_display = (*ScheduleAdmin.list_display, "last_result")
    actions = ["run_now"]

    def get_queryset(self, request):
        result = Task.objects.filter(id=OuterRef("task")).values("result")
        return super().get_queryset(request).annotate(task_result=Subquery(result[:1]))

    @admin.display(description="last result")
    def last_result(self, schedule: Schedule) -> str:
        return truncatechars(str(schedule.task_result or ""), 100)

    @admin.action(description="Run the selected schedules now")
    def run_now(self, request, queryset) -> None:
        indexing = {spec.func for spec in declared_schedules()}
        for schedule in queryset:
            if schedule.func in indexing:
                _reindex_now(request)  # through the same 409 rule as the API
            else:
                from django_q.tasks import async_task

                async_task(schedule.func, task_name=f"{schedule.name} (run now)")
                messages.success(request, f"{schedule.name} queued.")


admin.site.unregister(Schedule)
admin.site.register(Schedule, DeclaredScheduleAdmin)
