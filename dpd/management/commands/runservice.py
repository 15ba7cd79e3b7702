import os
import sys

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the API, pages and admin with gunicorn (the `make run` server)."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1:8000", help="address:port to serve on")
        parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")

    def handle(self, *args, bind: str, workers: int, **options):
        # exec: gunicorn becomes this process, so Ctrl-C and signals reach it directly.
        argv = [sys.executable, "-m", "gunicorn", "dpd.wsgi", "--bind", bind]
        argv += ["--workers", str(workers), "--access-logfile", "-"]
        self.stdout.write(f"serving on http://{bind}/ (admin at /admin/)")
        self.stdout.flush()
        os.execv(sys.executable, argv)
