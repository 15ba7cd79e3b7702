import json

from django.core.management.base import BaseCommand

from indexing.models import IndexRun
from indexing.status import indexing_status, pv_index_status


class Command(BaseCommand):
    help = (
        "Print the indexing state exactly as GET /status reports it (indexing and the "
        "indexing fields of pv_interface_status), plus the latest runs. A run whose "
        "heartbeat stopped is shown as STALLED with its holder, its last heartbeat and "
        "when another instance may take it over."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print one JSON document")
        parser.add_argument("--runs", type=int, default=5, help="latest runs to list (default 5)")

    def handle(self, *args, runs=5, **options):
        state = {"indexing": indexing_status(), "pv_interface_status": pv_index_status()}
        latest = list(IndexRun.objects.newest_first()[: max(runs, 0)])
        if options["json"]:
            state["runs"] = [
                {
                    "id": run.pk,
                    "status": run.status,
                    "trigger": run.trigger,
                    "created": run.created.isoformat(),
                    "indexed_by": run.indexed_by,
                    "failure_message": run.failure_message,
                }
                for run in latest
            ]
            self.stdout.write(json.dumps(state, indent=2))
            return
        indexing, pv = state["indexing"], state["pv_interface_status"]
        coordination = indexing["coordination_state"]
        progress = indexing["progress"]
        self.stdout.write(f"in_progress: {indexing['in_progress']}")
        self.stdout.write(
            "progress: " + " ".join(f"{key}={value}" for key, value in progress.items())
        )
        self.stdout.write(
            "coordination_state: "
            + " ".join(f"{key}={value}" for key, value in coordination.items())
        )
        self.stdout.write(
            "pv_interface_status: " + " ".join(f"{key}={value}" for key, value in pv.items())
        )
        if stalled := indexing["stalled"]:
            where = f"pid {stalled['holder_pid']} on {stalled['holder_host']}"
            takeover = "due now" if stalled["takeover_due"] else f"at {stalled['takeover_at']}"
            self.stdout.write(
                f"STALLED: {stalled['indexed_by']} ({where}) has not heartbeated for "
                f"{stalled['seconds_since_heartbeat']} s (last {stalled['last_heartbeat']}); "
                f"takeover by another instance {takeover}, or at once by a restart on "
                f"{stalled['holder_host']} if that process is gone"
            )
        for run in latest:
            detail = f" - {run.failure_message}" if run.failure_message else ""
            self.stdout.write(
                f"run {run.pk}: {run.status} ({run.trigger}, {run.indexed_by or '-'}, "
                f"{run.created:%Y-%m-%d %H:%M:%S}){detail}"
            )
