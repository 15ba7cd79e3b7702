import logging
import signal
import time
from pathlib import Path

from django_q.management.commands.qcluster import Command as DjangoQClusterCommand

from indexing.shutdown import signal_catching_descendants

logger = logging.getLogger(__name__)


class Command(DjangoQClusterCommand):
    help = (
        "Start the django-q2 worker cluster (django-q2's qcluster). On SIGTERM or SIGINT, "
        "a worker running an index is told first, so the run stops at its next batch "
        "boundary, is recorded as interrupted and frees the indexing slot; then the cluster "
        "stops as django-q2 does (each worker ends its task). Without this, the cluster "
        "would wait for the whole run."
    )

    def handle(self, *args, **options):
        # django-q2 starts the cluster and returns; the process then waits for it
        # to stop, and its signal handlers (set by the cluster) run meanwhile.
        super().handle(*args, **options)
        for signum in (signal.SIGTERM, signal.SIGINT):
            _tell_runs_first(signum)


# How long a signal sent to the whole process group may take to kill
# django-q2's sentinel (it keeps SIGTERM's default action).
SENTINEL_DEATH_SECONDS = 0.3


def _dies_soon(pid: int) -> bool:
    """Whether `pid` is gone (or a zombie) within SENTINEL_DEATH_SECONDS. Read
    from /proc, not waitpid: the main thread may be inside its own waitpid for
    that child, which can reap it first."""
    if not Path("/proc/self/stat").exists():
        return False  # not Linux: django-q2's own stop
    deadline = time.monotonic() + SENTINEL_DEATH_SECONDS
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _tell_runs_first(signum: int) -> None:
    cluster_handler = signal.getsignal(signum)
    if not callable(cluster_handler):
        return  # the cluster set no handler (run once): nothing to add to
    sentinel = getattr(getattr(cluster_handler, "__self__", None), "sentinel", None)

    def handler(received, frame):
        told = signal_catching_descendants(signal.SIGTERM)
        if told:
            logger.info("asked the index run(s) in %s to stop at their next batch", told)
        if sentinel is not None and _dies_soon(sentinel.pid):
            # A signal to the whole group (systemd, Ctrl-C) killed the sentinel,
            # maybe while it waited on the cluster's stop event: setting that
            # event would then wait forever for the dead waiter. There is
            # nothing left to stop; a worker running an index records it and
            # leaves on its own (indexing/tasks.py).
            logger.info("the cluster's sentinel is gone: exiting")
            return
        cluster_handler(received, frame)

    signal.signal(signum, handler)
