import logging
import signal

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


def _tell_runs_first(signum: int) -> None:
    cluster_handler = signal.getsignal(signum)
    if not callable(cluster_handler):
        return  # the cluster set no handler (run once): nothing to add to

    def handler(received, frame):
        told = signal_catching_descendants(signal.SIGTERM)
        if told:
            logger.info("asked the index run(s) in %s to stop at their next batch", told)
        cluster_handler(received, frame)

    signal.signal(signum, handler)
