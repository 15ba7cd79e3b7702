"""The flow watcher against a real etcd, step by step in the test's thread:
what a snapshot writes, what watched changes do, what hostile keys do."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time

import pytest

from dpd import sdp_sync
from dpd.models import DataProduct, Flow, ProcessingBlock, SdpWatcherState
from dpd.sdp import Connection, WatchCompacted
from dpd.sdp_watcher import FlowWatcher
from dpd.services import product_ingest_metadata
from indexing.leader import LostLeadership
from tests.service_processes import free_port

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
]

EB1, EB2, EB3 = "eb-m001-20260115-00003", "eb-m002-20260116-00001", "eb-m003-20260117-00001"
PB1 = "pb-m001-20260115-00003"
MSWRITER1 = f"{PB1}:data-product:vis-receive-mswriter"


def ingest(eb: str, **extra) -> DataProduct:
    return product_ingest_metadata(
        {
            "interface": "http://schema.skao.int/ska-data-product-meta/0.1",
            "execution_block": eb,
            "context": {"observer": "AIV_person_1", **extra},
        }
    )


@pytest.fixture
def watcher(sdp_etcd):
    """A watcher that holds the slot and has read the sample."""
    sdp_etcd.load()
    watching = FlowWatcher(holder="test-watcher")
    assert watching.claim()
    watching.connect()
    yield watching
    watching.shutdown()


def follow_until(watcher: FlowWatcher, condition, timeout: float = 10) -> None:
    """Apply watched batches until condition() holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the watcher did not get there"
        batch = watcher._next_batch(timeout=0.2)
        if batch:
            watcher.apply(batch)


def product(eb: str) -> DataProduct:
    return DataProduct.objects.exclude(source=DataProduct.Source.SDP).get(execution_block=eb)


def placeholders() -> dict[str, DataProduct]:
    rows = DataProduct.objects.filter(source=DataProduct.Source.SDP)
    return {row.metadata["config"]["processing_block"]: row for row in rows}


def test_the_sample_gives_the_flows_of_each_execution_block(sdp_etcd):
    for eb in (EB1, EB2):
        ingest(eb)
    sdp_etcd.load()
    watching = FlowWatcher(holder="test-watcher")
    watching.claim()
    watching.connect()
    watching.shutdown()
    by_eb = {
        eb: sorted(
            status or "-"
            for status in Flow.objects.filter(execution_block=eb).values_list("status", flat=True)
        )
        for eb in (EB1, EB2, EB3)
    }
    # Reference dlm-sdp.md 2.8: four flows for eb-m001 (one without state),
    # FAILED for eb-m002, INITIALISED for eb-m003.
    assert by_eb[EB1] == ["-", "COMPLETED", "FLOWING", "FLOWING"]
    assert by_eb[EB2] == ["FAILED"]
    assert by_eb[EB3] == ["INITIALISED"]
    failed = Flow.objects.get(execution_block=EB2)
    assert failed.reason == "receiver pod crash-looped"
    assert failed.sink["data_dir"].startswith("/mnt/data/product/")
    assert failed.pb_status == "FAILED"
    assert Flow.objects.get(key=MSWRITER1).sink["data_dir"]["pvc_subpath"].endswith(PB1)
    assert ProcessingBlock.objects.get(pb_id=PB1).status == "RUNNING"

    first = product(EB1)
    assert first.sdp_flow_status == "FLOWING"
    assert [f["sdp_flow"] for f in first.sdp_flows] == sorted(
        Flow.objects.filter(execution_block=EB1).values_list("key", flat=True)
    )
    row = json.loads(first.row_json)
    assert row["sdp_flows"] == first.sdp_flows
    assert row["sdp_flow_status"] == "FLOWING"
    assert product(EB2).sdp_flow_status == "FAILED"
    state = SdpWatcherState.objects.get()
    assert state.flows == 6 and state.revision == sdp_etcd.revision()


def test_an_active_processing_block_without_a_product_gets_a_placeholder(watcher):
    # No product at all: eb-m001's running PB and eb-m003's ready one; the
    # FINISHED batch PB and eb-m002's FAILED one get none.
    rows = placeholders()
    assert set(rows) == {PB1, "pb-m003-20260117-00001"}
    placeholder = rows["pb-m003-20260117-00001"]
    assert placeholder.execution_block == EB3
    assert placeholder.access_group is None
    assert placeholder.date_created.isoformat() == "2026-01-17"
    row = placeholder.flat_row()
    assert row["sdp_flow_placeholder"] is True
    assert row["metadata_store_name"] == "SDP"
    assert row["dataproduct_file"] == "None"
    assert row["sdp_flow_status"] == "INITIALISED"
    assert placeholder.row_json.startswith('{"sdp_flow_placeholder":true')


def test_a_placeholder_goes_once_a_product_of_its_execution_block_is_indexed(watcher):
    assert EB3 in {row.execution_block for row in placeholders().values()}
    ingest(EB3, access_group="hidden-group")  # hidden products count too
    watcher._next_reconcile = 0
    watcher.tick()
    assert EB3 not in {row.execution_block for row in placeholders().values()}
    assert product(EB3).sdp_flow_status == "INITIALISED"


def test_watched_changes_reach_the_products_rows(watcher, sdp_etcd):
    ingest(EB1)
    watcher._next_reconcile = 0
    watcher.tick()
    assert product(EB1).sdp_flow_status == "FLOWING"
    sdp_etcd.put(f"/flow/{MSWRITER1}/state", {"status": "FAILED", "reason": "disk full"})
    follow_until(watcher, lambda: product(EB1).sdp_flow_status == "FAILED")
    assert Flow.objects.get(key=MSWRITER1).reason == "disk full"
    sdp_etcd.delete(f"/flow/{MSWRITER1}")
    sdp_etcd.delete(f"/flow/{MSWRITER1}/state")
    follow_until(watcher, lambda: not Flow.objects.filter(key=MSWRITER1).exists())
    flows = {f["sdp_flow"] for f in product(EB1).sdp_flows}
    assert MSWRITER1 not in flows and len(flows) == 3
    assert SdpWatcherState.objects.get().last_event_at is not None


def test_a_processing_block_moving_to_another_execution_block_moves_its_flows(watcher, sdp_etcd):
    ingest(EB1)
    ingest("eb-new-20260201-00001")
    pb = json.loads(sdp_etcd.client.get(f"/pb/{PB1}")[0])
    sdp_etcd.put(f"/pb/{PB1}", {**pb, "eb_id": "eb-new-20260201-00001"})
    follow_until(watcher, lambda: product("eb-new-20260201-00001").sdp_flows is not None)
    assert {f["sdp_flow"].split(":")[0] for f in product(EB1).sdp_flows} == {
        "pb-m001-20260115-00004"
    }
    assert Flow.objects.get(key=MSWRITER1).execution_block == "eb-new-20260201-00001"


def test_hostile_keys_are_skipped_or_shown_never_a_crash(watcher, sdp_etcd, caplog):
    ingest("eb-odd-20260301-00001")
    sdp_etcd.put("/flow/pb-bad:data-product:broken", "{not json", raw=True)
    sdp_etcd.put("/flow/pb-bad:data-product:list", [1, 2])
    sdp_etcd.put("/flow/no-colons-here", {"sink": {}})
    sdp_etcd.put("/flow/pb-x:data-product:a/unexpected", {})
    sdp_etcd.put("/pb/pb-noeb", {"pb_id": "pb-noeb", "script": {"name": "batch"}})
    sdp_etcd.put("/pb/pb-numeric-eb", {"eb_id": 42})
    sdp_etcd.put("/flow/pb-orphan:data-product:lost/state", {"status": "FLOWING"})
    sdp_etcd.put("/pb/pb-odd", {"eb_id": "eb-odd-20260301-00001"})
    odd = "pb-odd:data-product:naïve name:with:colons ☃"
    sdp_etcd.put(f"/flow/{odd}", {"sink": {"kind": "data-product", "data_dir": "/x"}})
    sdp_etcd.put(f"/flow/{odd}/state", {"status": "FLOWING", "last_updated": "yesterday"})
    sdp_etcd.put("/pb/pb-odd/state", {"status": ["not", "text"], "last_updated": 1e300})
    follow_until(watcher, lambda: Flow.objects.filter(key=odd, status="FLOWING").exists())

    assert not Flow.objects.filter(processing_block="pb-bad").exists()
    assert not Flow.objects.filter(key="no-colons-here").exists()
    orphan = Flow.objects.get(key="pb-orphan:data-product:lost")
    assert orphan.execution_block is None and orphan.has_definition is False
    assert ProcessingBlock.objects.get(pb_id="pb-noeb").execution_block is None
    assert ProcessingBlock.objects.get(pb_id="pb-numeric-eb").execution_block is None
    flow = Flow.objects.get(key=odd)
    assert (flow.processing_block, flow.kind, flow.name) == (
        "pb-odd",
        "data-product",
        "naïve name:with:colons ☃",
    )
    assert product("eb-odd-20260301-00001").sdp_flows == [
        {"sdp_flow": odd, "sdp_flow_status": "FLOWING"}
    ]
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "/flow/pb-bad:data-product:broken" in warned
    assert "/flow/no-colons-here" in warned


def test_a_snapshot_removes_what_was_deleted_while_nobody_watched(watcher, sdp_etcd):
    ingest(EB1)
    watcher.disconnect()
    sdp_etcd.delete(f"/flow/{MSWRITER1}")
    sdp_etcd.delete(f"/flow/{MSWRITER1}/state")
    sdp_etcd.delete("/pb/pb-m003-20260117-00001")
    sdp_etcd.delete("/pb/pb-m003-20260117-00001/state")
    watcher.connect()
    assert not Flow.objects.filter(key=MSWRITER1).exists()
    assert "pb-m003-20260117-00001" not in placeholders()
    assert len(product(EB1).sdp_flows) == 3


def test_a_compacted_watch_ends_in_a_fresh_snapshot(watcher, sdp_etcd):
    ingest(EB1)
    watcher.disconnect()
    stale = watcher.revision
    sdp_etcd.put(f"/flow/{MSWRITER1}/state", {"status": "COMPLETED"})
    sdp_etcd.client.delete_prefix("/flow/pb-m001-20260115-00003:data-queue:")
    sdp_etcd.compact()
    # Resuming from the old revision is refused: the watch ends with WatchCompacted ...
    watcher.connection, watcher.changes = Connection(), queue.Queue()
    watcher.connection.watch(stale + 1, watcher.changes)
    with pytest.raises(WatchCompacted):
        follow_until(watcher, lambda: False, timeout=5)
    # ... and lead() starts over with a snapshot: etcd's content, nothing stale.
    watcher.connect()
    assert Flow.objects.get(key=MSWRITER1).status == "COMPLETED"
    assert not Flow.objects.filter(kind="data-queue").exists()
    in_etcd = {
        key[len("/flow/") :]
        for key in Connection().snapshot().values
        if key.startswith("/flow/") and not key.endswith("/state")
    }
    assert set(Flow.objects.values_list("key", flat=True)) == in_etcd


def test_summaries_rank_failures_first_and_completed_last():
    def flows(*statuses):
        return [
            sdp_sync.FlowRecord(f"pb:k:{i}", "pb", "k", str(i), status=s)
            for i, s in enumerate(statuses)
        ]

    assert sdp_sync.summarise(flows("COMPLETED", "FLOWING", None))[1] == "FLOWING"
    assert sdp_sync.summarise(flows("COMPLETED", "FAILED", "FLOWING"))[1] == "FAILED"
    assert sdp_sync.summarise(flows("COMPLETED", "COMPLETED"))[1] == "COMPLETED"
    assert sdp_sync.summarise(flows("COMPLETED", "SOMETHING-NEW"))[1] == "SOMETHING-NEW"
    assert sdp_sync.summarise(flows(None))[1] is None


def test_one_instance_writes_and_another_takes_over_when_it_stops_heartbeating(sdp_etcd, settings):
    settings.SDP_WATCHER_STALE_SECONDS = 1
    first, second = FlowWatcher(holder="pod-a"), FlowWatcher(holder="pod-b")
    assert first.claim()
    first.tick(reconcile=False)  # a live heartbeat
    assert not second.claim()
    time.sleep(1.2)  # pod-a stopped heartbeating (killed)
    assert second.claim()
    assert second.lease.previous_holder == "pod-a"
    with pytest.raises(LostLeadership):
        first._next_heartbeat = 0
        first.tick(reconcile=False)


def test_an_unreachable_etcd_is_one_warning_not_one_per_retry(sdp_etcd, settings, caplog):
    """The embedded default has no etcd: its log must not repeat the same
    warning every reconnect delay; a new outage after a recovery warns again."""
    settings.SDP_CONFIG_PORT = free_port()  # nothing listens there
    settings.SDP_WATCHER_RECONNECT_DELAY_SECONDS = 0.05
    watching = FlowWatcher(holder="test-watcher")
    assert watching.claim()

    def attempts() -> list:
        return [r for r in caplog.records if r.name == "dpd.sdp_watcher" and "etcd" in r.message]

    def lead_until(count: int) -> None:
        watching.stop.clear()
        stopper = threading.Thread(target=_stop_after, args=(watching, attempts, count))
        stopper.start()
        watching.lead()
        stopper.join()

    with caplog.at_level(logging.DEBUG, logger="dpd.sdp_watcher"):
        lead_until(4)
        assert [r.levelno for r in attempts()][:4] == [logging.WARNING] + [logging.DEBUG] * 3
        assert SdpWatcherState.objects.get().etcd_connected is False  # /status still says so

        settings.SDP_CONFIG_PORT = sdp_etcd.port
        watching.connect()  # etcd is back
        settings.SDP_CONFIG_PORT = free_port()
        caplog.clear()
        lead_until(2)
        assert [r.levelno for r in attempts()][:2] == [logging.WARNING, logging.DEBUG]
    watching.shutdown()


def _stop_after(watcher: FlowWatcher, attempts, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(attempts()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    watcher.stop.set()
