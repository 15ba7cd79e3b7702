import os
import sys

from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from dpd import gunicorn_conf, sdp
from dpd.apps import SERVICE_STARTED_AT
from dpd.supervisor import Supervisor
from dpd.web_server import gunicorn_command


class Command(BaseCommand):
    help = (
        "Run the whole service with one command (the `make run` server): gunicorn serves the "
        "API, pages and admin, and the django-q2 worker (qcluster) runs background indexing. "
        "Both are supervised together: SIGTERM/SIGINT stop both (downloads in flight get "
        "DPD_SHUTDOWN_GRACE_SECONDS to finish), and if either exits the other "
        "is stopped and the command exits non-zero. With SDP_ETCD_HOST set it also runs the SDP "
        "flow watcher (sdpwatch). At start-up it upserts the schedules "
        "declared in code and queues start-up indexing (INDEXING_ON_STARTUP); while it runs "
        "it watches the indexing leader and queues a takeover run if it dies."
    )

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1:8000", help="address:port to serve on")
        parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
        parser.add_argument(
            "--grace",
            type=float,
            default=None,
            help="seconds to wait for a clean stop before killing what is left (default: "
            "DPD_SHUTDOWN_GRACE_SECONDS for downloads in flight, plus the time gunicorn "
            "takes to end them)",
        )

    def handle(self, *args, bind: str, workers: int, grace: float | None, **options):
        if grace is None:
            grace = gunicorn_conf.graceful_timeout + 2  # gunicorn's own stop, then ours
        web = gunicorn_command(bind, workers, "--access-logfile", "-")
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        commands = {"web": web, "worker": [*manage, "qcluster"]}
        if sdp.enabled():  # the SDP flow watcher (dpd/sdp_watcher.py)
            commands["sdp"] = [*manage, "sdpwatch"]
        supervisor = Supervisor(
            commands,
            grace_seconds=grace,
            tick=_watch_leader,
            # As often as a start-up task watches: takeover within ~1.05 x the stale limit.
            tick_seconds=max(settings.INDEXING_HEARTBEAT_STALE_SECONDS / 20, 0.5),
        )
        supervisor.install_signal_handlers()
        _prepare_database(self.stdout)
        _prepare_background_work(self.stdout)
        self.stdout.write(f"serving on http://{bind}/ (admin at /admin/), worker: qcluster")
        self.stdout.flush()
        started = apps.get_app_config("dpd").startup_time
        os.environ[SERVICE_STARTED_AT] = started.isoformat()  # for every worker's /status
        supervisor.start()
        code = supervisor.run()
        if code:
            sys.exit(code)


def _prepare_database(stdout) -> None:
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


def _prepare_background_work(stdout) -> None:
    """Upsert the declared schedules and queue start-up indexing, once per
    service start. Not in AppConfig.ready(): that runs in every process
    (each gunicorn and django-q2 worker, every manage.py command, the tests)
    and would queue a run for each of them."""
    from django.db import DatabaseError

    from dlm_bridge.tasks import prepare_background_work as prepare_dlm_sync
    from indexing.tasks import queue_startup_index, sync_schedules

    try:
        for line in [*sync_schedules(), *prepare_dlm_sync()]:  # DLM: issue 19
            stdout.write(f"schedule {line}")
        if settings.INDEXING_ON_STARTUP:
            queue_startup_index(timezone.now())
            stdout.write("start-up indexing queued")
    except DatabaseError as exc:
        # Serve anyway (/status reports the database); the schedule indexes later.
        stdout.write(f"database unavailable at start-up, no start-up indexing: {exc}")


def _watch_leader() -> None:
    """The supervisor's periodic step: queue a takeover run when the volume's
    leader stopped heartbeating (indexing.services.leader_watch)."""
    from django.db import DatabaseError, connection

    from indexing.services import leader_watch

    try:
        leader_watch()
    except DatabaseError:
        connection.close()  # reconnect at the next step; /status reports the database
