import signal
import threading

from django.core.management.base import BaseCommand

from dpd import sdp
from dpd.sdp_watcher import FlowWatcher


class Command(BaseCommand):
    help = (
        "Mirror the SDP configuration database's flows (etcd, SDP_ETCD_HOST) into the "
        "catalogue until SIGTERM/SIGINT. Every instance may run it: one writes, the others "
        "stand by and take over when its heartbeat goes stale (SDP_WATCHER_STALE_SECONDS). "
        "`runworker` (and so `runservice`) starts it beside the django-q2 worker."
    )

    def handle(self, *args, **options):
        if not sdp.enabled():
            self.stdout.write("SDP_ETCD_HOST is empty: flow enrichment is off")
            return
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        self.stdout.write(f"watching SDP flows at {sdp.endpoint()}")
        self.stdout.flush()
        FlowWatcher(stop=stop).run()
