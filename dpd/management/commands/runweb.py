import os

from django.core.management.base import BaseCommand
from django.db import connections

from dpd.service_sides import mark_service_start, prepare_database
from dpd.web_server import gunicorn_command


class Command(BaseCommand):
    help = (
        "Run the service's web side alone (Kubernetes web pods, beside one `manage.py "
        "runworker`): say which database is in use, apply the migrations "
        "(DPD_MIGRATE_ON_STARTUP), then become gunicorn with the project's configuration "
        "(dpd/gunicorn_conf.py). No background work runs here: without a runworker on the "
        "same database the volume is never indexed."
    )

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1:8000", help="address:port to serve on")
        parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")

    def handle(self, *args, bind: str, workers: int, **options):
        prepare_database(self.stdout)
        self.stdout.write(f"serving on http://{bind}/ (web side only)")
        self.stdout.flush()
        mark_service_start()
        argv = gunicorn_command(bind, workers)
        connections.close_all()  # the migration's connection must not outlive us in gunicorn
        # gunicorn takes this process's place: signals reach its master directly.
        os.execv(argv[0], argv)
