import sys

from django.core.management.base import BaseCommand

from dpd.service_sides import default_grace, run_supervised, worker_commands
from dpd.web_server import gunicorn_command


class Command(BaseCommand):
    help = (
        "Run the whole service with one command (the `make run` server): the web side "
        "(gunicorn: the API, pages, admin, /healthz, /readyz, /metrics) and the worker side "
        "(what `manage.py runworker` runs: the django-q2 cluster, the SDP flow watcher when "
        "SDP_ETCD_HOST is set, the schedules declared in code, start-up indexing and the "
        "indexing leader watch). Both are supervised together: SIGTERM/SIGINT stop both "
        "(downloads in flight get DPD_SHUTDOWN_GRACE_SECONDS to finish), and if either exits "
        "the other is stopped and the command exits non-zero."
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
        # No gunicorn access log: dpd.ops.middleware logs every request (LOG_FORMAT).
        commands = {"web": gunicorn_command(bind, workers), **worker_commands()}
        code = run_supervised(
            commands,
            grace=default_grace() if grace is None else grace,
            stdout=self.stdout,
            banner=f"serving on http://{bind}/ (admin at /admin/), worker: qcluster",
            background=True,
        )
        if code:
            sys.exit(code)
