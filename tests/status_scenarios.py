"""States of the tables /status reads, and what its one statement
(dpd.status_rows) makes of each against the reads one by one that the rest
of the service uses (indexing_status, pv_index_status, watcher_status,
Remembered.version).

Run in the test process on PostgreSQL (tests/test_status_rows.py), and as
`python -m tests.status_scenarios` on the SQLite file its DATABASE_URL names
(migrated first), where it prints the differences as JSON: the two databases
write times, intervals, booleans and JSON into a JSON object differently.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable

import time_machine

NOW = dt.datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=dt.UTC)


def _empty() -> None:
    pass


def _running_with_a_queued_run_and_a_product() -> None:
    from django.conf import settings

    from dpd.metadata import from_ingested_document
    from dpd.models import DataProduct, SdpWatcherState
    from indexing.leader import volume_prefix
    from indexing.models import IndexingState, IndexRun

    prefix = volume_prefix()
    product = from_ingested_document({"execution_block": "eb-status-20260304-00001"})
    DataProduct.objects.create(**DataProduct.fields_from(product), source=DataProduct.Source.API)
    # The newest finished run is the completed one; a long one (over a day).
    IndexRun.objects.create(
        volume_prefix=prefix,
        trigger=IndexRun.Trigger.API,
        status=IndexRun.Status.TIMEOUT,
        terminal_timestamp=NOW - dt.timedelta(days=3),
        duration=dt.timedelta(minutes=5),
        timed_out=True,
        work_units=7,
        files_added=3,
    )
    IndexRun.objects.create(
        volume_prefix=prefix,
        trigger=IndexRun.Trigger.API,
        status=IndexRun.Status.COMPLETED,
        terminal_timestamp=NOW - dt.timedelta(hours=2),
        duration=dt.timedelta(days=1, hours=2, seconds=3, microseconds=450000),
        work_units=12,
        files_added=40,
        files_updated=2,
    )
    IndexRun.objects.create(volume_prefix=prefix, trigger=IndexRun.Trigger.API)  # queued
    IndexRun.objects.create(  # another volume's: not this one's last run
        volume_prefix="dpd_another",
        trigger=IndexRun.Trigger.API,
        status=IndexRun.Status.COMPLETED,
        terminal_timestamp=NOW,
        duration=dt.timedelta(seconds=1),
    )
    IndexingState.objects.create(
        volume_prefix=prefix,
        indexed_by="pod-a",
        indexing_running=True,
        lease=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        holder_process={"host": "node-1", "pid": 4321, "started": 1.5},
        started_at=NOW - dt.timedelta(minutes=3),
        last_heartbeat=NOW - dt.timedelta(seconds=2),
        files_indexed=99,
        indexing_step="parsing",
        files_processed=50,
        total_files=120,
        files_added=20,
        files_updated=5,
        files_skipped=25,
    )
    SdpWatcherState.objects.create(
        pk=1,
        holder="pod-a",
        etcd_connected=True,
        watcher_connected=True,
        revision=2**40,
        last_event_at=NOW - dt.timedelta(seconds=30),
        flows=17,
        heartbeat=NOW - dt.timedelta(seconds=1),
    )
    assert settings.USE_TZ


def _stalled_and_a_stale_watcher() -> None:
    from dpd.models import SdpWatcherState
    from indexing.leader import volume_prefix
    from indexing.models import IndexingState

    IndexingState.objects.create(
        volume_prefix=volume_prefix(),
        indexed_by="pod-b",
        indexing_running=True,
        started_at=NOW - dt.timedelta(hours=1),
        last_heartbeat=NOW - dt.timedelta(hours=1),
        indexing_step="walking",
    )
    SdpWatcherState.objects.create(
        pk=1,
        holder="pod-b",
        etcd_connected=False,
        message="etcd: connection refused",
        heartbeat=NOW - dt.timedelta(days=1),
    )


def _never_indexed_and_a_run_queued() -> None:
    from indexing.leader import volume_prefix
    from indexing.models import IndexRun

    IndexRun.objects.create(volume_prefix=volume_prefix(), trigger=IndexRun.Trigger.API)


SCENARIOS: dict[str, Callable[[], None]] = {
    "empty": _empty,
    "never indexed, a run queued": _never_indexed_and_a_run_queued,
    "running, a queued run, a product": _running_with_a_queued_run_and_a_product,
    "stalled, a stale watcher": _stalled_and_a_stale_watcher,
}


def _clear() -> None:
    from dpd.models import DataProduct, SdpWatcherState
    from indexing.models import IndexingState, IndexRun

    for model in (IndexingState, IndexRun, SdpWatcherState, DataProduct):
        model.objects.all().delete()


def differences() -> dict[str, dict]:
    """For each scenario, every block on which the two ways disagree:
    {scenario: {block: [one statement's, one by one's]}}."""
    from dpd.remembered_counts import Remembered
    from dpd.sdp_watcher import watcher_block, watcher_status
    from dpd.status_rows import StatusRows
    from indexing.status import indexing_block, indexing_status, pv_index_block, pv_index_status

    found = {}
    for name, make in SCENARIOS.items():
        _clear()
        make()
        with time_machine.travel(NOW, tick=False):
            rows = StatusRows.read(with_watcher=True)
            pairs = {
                "indexing": (indexing_block(rows.state, rows.has_queued), indexing_status()),
                "pv": (pv_index_block(rows.last_run), pv_index_status()),
                "sdp": (watcher_block(rows.watcher), watcher_status()),
                "version": (_plain(rows.version), _plain(Remembered().version())),
            }
        wrong = {block: list(pair) for block, pair in pairs.items() if pair[0] != pair[1]}
        if wrong:
            found[name] = json.loads(json.dumps(wrong, default=str))
    _clear()
    return found


def _plain(version):
    return None if version is None else [str(part) for part in version]


if __name__ == "__main__":
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(json.dumps(differences()))
