"""Indexing state shared by every instance, and the history of runs.

`IndexingState` is the lease table of the SKA DPD API (`dpd_indexing_state`):
one row per volume, claimed by one instance at a time (indexing/leader.py).
`IndexRun` records every run, including the ones a follower skipped; the
job resource `/api/v1/index-runs/<id>/`, `/status` and the admin read it.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone


class IndexingState(models.Model):
    """One row per volume: who holds the indexing slot and the live progress."""

    volume_prefix = models.CharField(max_length=64, unique=True)
    indexed_by = models.CharField(max_length=255, blank=True, default="")
    indexing_running = models.BooleanField(default=False)
    # A fresh token per claim: a heartbeat only counts when it comes from the
    # claim that is still current, even if two instances share a name.
    lease = models.UUIDField(null=True, blank=True, editable=False)
    # Where the holder process runs (host, pid, boot id, namespaces): lets a
    # restart on the same machine prove it dead at once (indexing/holder.py).
    holder_process = models.JSONField(default=dict, blank=True, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    files_indexed = models.IntegerField(default=0)
    run = models.ForeignKey(
        "IndexRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Live progress of the current (or last) run, as /status reports it.
    indexing_step = models.CharField(max_length=128, default="idle")
    files_processed = models.IntegerField(default=0)
    total_files = models.IntegerField(default=0)
    files_added = models.IntegerField(default=0)
    files_updated = models.IntegerField(default=0)
    files_skipped = models.IntegerField(default=0)

    class Meta:
        db_table = "dpd_indexing_state"
        verbose_name = "indexing state"

    def __str__(self) -> str:
        holder = self.indexed_by or "nobody"
        return f"{self.volume_prefix} ({'running' if self.indexing_running else 'idle'}, {holder})"


class IndexRunQuerySet(models.QuerySet):
    def active(self) -> IndexRunQuerySet:
        return self.filter(status__in=IndexRun.ACTIVE)

    def newest_first(self) -> IndexRunQuerySet:
        return self.order_by("-created", "-pk")


class IndexRun(models.Model):
    """One indexing run: what asked for it, what happened, what it found."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        TIMEOUT = "timeout_partial_completion", "Timed out (partial)"
        ERROR = "error", "Error"
        SKIPPED = "skipped", "Skipped (another instance is the leader)"
        INTERRUPTED = "interrupted", "Interrupted (the service was stopping)"

    class Trigger(models.TextChoices):
        STARTUP = "startup", "Service start-up"
        SCHEDULE = "schedule", "Periodic schedule"
        API = "api", "GET /reindexdataproducts"
        COMMAND = "command", "manage.py reindex"
        ADMIN = "admin", "Admin action"
        TAKEOVER = "takeover", "Takeover of a dead leader's slot"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    LOG_LIMIT = 200  # lines kept per run; the first ones and the last one matter most
    ERROR_LIMIT = 1000  # failed files kept per run

    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    status = models.CharField(
        max_length=32, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    volume_prefix = models.CharField(max_length=64, db_index=True)
    indexed_by = models.CharField(max_length=255, blank=True, default="")
    created = models.DateTimeField(default=timezone.now, db_index=True)
    started = models.DateTimeField(null=True, blank=True)
    terminal_timestamp = models.DateTimeField(null=True, blank=True)
    # Touched after every batch: a running run whose heartbeat stopped was abandoned.
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    indexing_step = models.CharField(max_length=128, default="idle")
    files_found = models.IntegerField(default=0)
    files_processed = models.IntegerField(default=0)
    files_added = models.IntegerField(default=0)
    files_updated = models.IntegerField(default=0)
    files_skipped = models.IntegerField(default=0)
    files_removed = models.IntegerField(default=0)
    work_units = models.IntegerField(default=0)
    duration = models.DurationField(null=True, blank=True)
    timed_out = models.BooleanField(default=False)
    failure_message = models.TextField(blank=True, default="")
    errors = models.JSONField(default=list, blank=True, help_text='[{"path": ..., "reason": ...}]')
    log = models.JSONField(default=list, blank=True, help_text="Short log of the run.")

    objects = IndexRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-pk"]
        constraints = [
            # The database, not a check-then-insert, refuses a second active run:
            # two simultaneous re-index requests cannot both be accepted.
            models.UniqueConstraint(
                fields=["volume_prefix"],
                condition=Q(status__in=["queued", "running"]),
                name="indexing_one_active_run_per_volume",
            )
        ]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.trigger}, {self.status})"

    def get_absolute_url(self) -> str:
        return reverse("index-run-detail", kwargs={"pk": self.pk})

    @property
    def is_terminal(self) -> bool:
        return self.status not in self.ACTIVE

    def add_log(self, line: str) -> None:
        """Append a timestamped line, keeping the log short."""
        stamp = timezone.now().strftime("%H:%M:%S")
        self.log = [*self.log, f"{stamp} {line}"][-self.LOG_LIMIT :]

    def finish(self, status: str, *, message: str = "") -> None:
        """Set a terminal status and its timestamps (the caller saves)."""
        now = timezone.now()
        self.status = status
        self.terminal_timestamp = now
        if self.started is not None:
            self.duration = now - self.started
        if message:
            self.failure_message = message

    def stale_since(self, stale_seconds: int) -> bool:
        beat = self.last_heartbeat or self.started or self.created
        return beat < timezone.now() - timedelta(seconds=stale_seconds)
