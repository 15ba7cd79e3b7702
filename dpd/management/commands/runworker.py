import sys

from django.core.management.base import BaseCommand

from dpd.service_sides import default_grace, run_supervised, worker_commands


class Command(BaseCommand):
    help = (
        "Run the service's worker side without a web server (a Kubernetes worker pod beside "
        "web pods that run `manage.py runweb`): apply the migrations "
        "(DPD_MIGRATE_ON_STARTUP), upsert the schedules declared in code, queue start-up "
        "indexing (INDEXING_ON_STARTUP), run the django-q2 cluster and, with SDP_ETCD_HOST "
        "set, the SDP flow watcher, and watch the indexing leader (a takeover run when it "
        "dies). Several runworkers on one database index the volume once between them. "
        "SIGTERM/SIGINT stop everything (a run stops at its next batch); if a child exits, "
        "the rest are stopped and the command exits non-zero."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--grace",
            type=float,
            default=None,
            help="seconds to wait for a clean stop before killing what is left",
        )

    def handle(self, *args, grace: float | None, **options):
        commands = worker_commands()
        code = run_supervised(
            commands,
            grace=default_grace() if grace is None else grace,
            stdout=self.stdout,
            banner=f"worker side running: {', '.join(commands)}",
            background=True,
        )
        if code:
            sys.exit(code)
