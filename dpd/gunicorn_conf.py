"""gunicorn's configuration, read by the master of every server the project
starts (`gunicorn -c python:dpd.gunicorn_conf`; dpd.web_server.gunicorn_command).

The serving model (docs/deployment.md has the measurements behind it):
threaded workers, so that a download lasts as long as its client needs while
the process's other threads answer everything else. Each worker runs
DPD_DOWNLOADS_PER_PROCESS + DPD_WEB_THREADS threads and its master loop
heartbeats whatever the threads are doing, so gunicorn's worker timeout
never kills a long transfer. The values come from Django's settings, read
from the master's environment, so the master and its workers agree.
"""

import math
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dpd.settings")

from django.conf import settings

from dpd import download_slots

# How long after its SIGTERM the master waits for a worker before it kills it:
# the worker's own grace (DPD_SHUTDOWN_GRACE_SECONDS), then time to end the
# requests it cut and to log them.
SHUTDOWN_MARGIN_SECONDS = 5

worker_class = "dpd.web_server.ServiceWorker"
threads = settings.DPD_DOWNLOADS_PER_PROCESS + settings.DPD_WEB_THREADS
graceful_timeout = math.ceil(settings.DPD_SHUTDOWN_GRACE_SECONDS + SHUTDOWN_MARGIN_SECONDS)
# Each worker proves it is alive by touching a file; in memory (/dev/shm,
# where there is one) that never waits on the disk's journal, as gunicorn's
# documentation advises for containers.
if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
    worker_tmp_dir = "/dev/shm"


# gunicorn's own log lines (start, stop, worker timeouts) in the project's
# format: JSON with LOG_FORMAT=json, as every other line.
if settings.LOG_FORMAT != "plain":
    logconfig_dict = {"formatters": {"generic": settings.LOG_FORMATTERS[settings.LOG_FORMAT]}}

# /metrics sums the request metrics of every worker through files in this
# directory (prometheus_client's multiprocess mode, dpd.ops.metrics).
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
_made_metrics_dir = ""


def _prepare_metrics_dir() -> None:
    """Before the workers fork: the directory given by PROMETHEUS_MULTIPROC_DIR
    (made if missing, emptied: a new server counts from zero, as Prometheus
    expects of a restarted target), or one of our own, removed at exit."""
    global _made_metrics_dir
    configured = os.environ.get(METRICS_DIR_ENV, "").strip()
    if configured:
        folder = Path(configured)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink(missing_ok=True)
    else:
        _made_metrics_dir = tempfile.mkdtemp(prefix="dpd-metrics-")
        os.environ[METRICS_DIR_ENV] = _made_metrics_dir


_mark_process_dead = None


def on_starting(server) -> None:
    global _mark_process_dead
    download_slots.share_between_processes()  # before the workers are forked
    _prepare_metrics_dir()
    # Imported here, once its directory is in the environment (prometheus_client
    # reads it at import), and never in child_exit: gunicorn calls that from
    # its SIGCHLD handler, and a second worker's death during the import ran
    # the import again inside it ("partially initialized module"), an
    # exception that ended the master and the whole web side (two workers
    # SIGKILLed at once, as the OOM killer may).
    from prometheus_client.multiprocess import mark_process_dead

    _mark_process_dead = mark_process_dead


def child_exit(server, worker) -> None:
    if _mark_process_dead is not None:
        _mark_process_dead(worker.pid)  # its live gauges go; its counts stay


def on_exit(server) -> None:
    download_slots.stop_sharing()
    if _made_metrics_dir:
        shutil.rmtree(_made_metrics_dir, ignore_errors=True)
