"""The service's two sides, and the start-up steps they share.

- The **web side** is gunicorn (dpd.web_server.gunicorn_command): the API,
  pages, admin, health and metrics. Any number of web processes or pods.
- The **worker side** is what runs in the background: the django-q2 cluster
  (`qcluster`, background indexing), the SDP flow watcher (`sdpwatch`) when
  SDP_ETCD_HOST is set, and, in the supervising process itself, the
  start-up steps (upsert the declared schedules, queue start-up indexing)
  and the periodic leader watch (queue a takeover run when the indexing
  leader dies).

`manage.py runworker` runs the worker side alone, `manage.py runweb` the web
side alone (Kubernetes: web pods and a worker pod), `manage.py runservice`
both under one supervisor (one machine, `make run`). All three go through
`run_supervised` or `prepare_database` here, so they start alike.
Several workers and web processes on one database behave as one service:
the indexing slot and the queue live in the database (docs/indexing.md).
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from django.apps import apps
from django.conf import settings
from django.core.management.base import CommandError
from django.utils import timezone

from dpd import gunicorn_conf, sdp
from dpd.apps import SERVICE_STARTED_AT
from dpd.supervisor import Supervisor


def default_grace() -> float:
    """Seconds a side gets to stop cleanly: gunicorn's own stop (the
    downloads' grace and its margin), then ours."""
    return gunicorn_conf.graceful_timeout + 2


def worker_commands() -> dict[str, list[str]]:
    """The worker side's child processes, by name."""
    manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
    commands = {"worker": [*manage, "qcluster"]}
    if sdp.enabled():  # the SDP flow watcher (dpd/sdp_watcher.py)
        commands["sdp"] = [*manage, "sdpwatch"]
    return commands


def run_supervised(
    commands: dict[str, list[str]],
    *,
    grace: float,
    stdout: TextIO,
    banner: str,
    background: bool,
) -> int:
    """Prepare the database, then run `commands` until a signal or a child's
    exit (dpd.supervisor). `background`: this process is a worker side, so it
    queues the start-up work and watches the indexing leader."""
    supervisor = Supervisor(
        commands,
        grace_seconds=grace,
        tick=watch_leader if background else None,
        # As often as a start-up task watches: takeover within ~1.05 x the stale limit.
        tick_seconds=max(settings.INDEXING_HEARTBEAT_STALE_SECONDS / 20, 0.5),
    )
    supervisor.install_signal_handlers()
    prepare_database(stdout)
    if background:
        prepare_background_work(stdout)
    stdout.write(banner)
    stdout.flush()
    mark_service_start()
    supervisor.start()
    return supervisor.run()


def mark_service_start() -> None:
    """Hand this service's start time to its children (every worker's /status)."""
    started = apps.get_app_config("dpd").startup_time
    os.environ[SERVICE_STARTED_AT] = started.isoformat()


def prepare_database(stdout: TextIO) -> None:
    """Say which database is in use; refuse to start when the server refuses
    the configuration; apply the migrations (dpd.database_check says why)."""
    from dpd.database_check import (
        DatabaseMisconfigured,
        database_check,
        database_in_use_line,
        database_migrate,
    )

    stdout.write(f"database: {database_in_use_line()}")
    try:
        unreachable = database_check()
    except DatabaseMisconfigured as exc:
        raise CommandError(f"cannot start: {exc}") from None
    if unreachable:
        stdout.write(f"database unreachable at start-up, no migrations applied: {unreachable}")
    elif settings.DPD_MIGRATE_ON_STARTUP:
        try:
            database_migrate(stdout)
        except DatabaseMisconfigured as exc:
            raise CommandError(f"cannot start: {exc}") from None
        stdout.write("database migrations applied")


def prepare_background_work(stdout: TextIO) -> None:
    """Upsert the declared schedules and queue start-up indexing, once per
    worker-side start. Not in AppConfig.ready(): that runs in every process
    (each gunicorn and django-q2 worker, every manage.py command, the tests)
    and would queue a run for each of them. Several worker sides starting
    together queue one start-up task each; all but one skip (the leader
    rules, docs/indexing.md)."""
    from django.db import DatabaseError

    from dlm_bridge.tasks import prepare_background_work as prepare_dlm_sync
    from indexing.tasks import queue_startup_index, sync_schedules

    try:
        for line in [*sync_schedules(), *prepare_dlm_sync()]:
            stdout.write(f"schedule {line}")
        if settings.INDEXING_ON_STARTUP:
            queue_startup_index(timezone.now())
            stdout.write("start-up indexing queued")
    except DatabaseError as exc:
        # Run anyway; the schedule (or the next start) indexes later.
        stdout.write(f"database unavailable at start-up, no start-up indexing: {exc}")


def watch_leader() -> None:
    """The worker side's periodic step: queue a takeover run when the
    volume's leader stopped heartbeating (indexing.services.leader_watch)."""
    from django.db import DatabaseError, connection

    from indexing.services import leader_watch

    try:
        leader_watch()
    except DatabaseError:
        connection.close()  # reconnect at the next step; /status reports the database
