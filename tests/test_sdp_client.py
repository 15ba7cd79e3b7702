"""dpd.sdp against a real etcd: what the watcher reads and how it fails."""

from __future__ import annotations

import json
import queue
import time

import pytest

from dpd import sdp
from tests.etcd_server import sample_keys
from tests.service_processes import free_port

# Closing a connection ends etcd3's watch thread with SystemExit, which the
# interpreter ignores and pytest reports as a warning.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")


def test_a_snapshot_holds_every_watched_key_at_one_revision(sdp_etcd):
    revision = sdp_etcd.load()
    snapshot = sdp.Connection().snapshot()
    assert snapshot.revision == revision
    watched = {k for k in sample_keys() if k.startswith(sdp.PREFIXES)}
    assert set(snapshot.values) == watched
    assert len(watched) == 24  # not /dependency/ nor /script/
    flow = "/flow/pb-m002-20260116-00001:data-product:vis-receive-mswriter/state"
    assert json.loads(snapshot.values[flow])["status"] == "FAILED"


def test_a_watch_delivers_puts_and_deletes_after_the_snapshot(sdp_etcd):
    sdp_etcd.load()
    connection = sdp.Connection()
    snapshot = connection.snapshot()
    changes: queue.Queue = queue.Queue()
    connection.watch(snapshot.revision + 1, changes)
    try:
        sdp_etcd.put("/flow/pb-x:data-product:a/state", {"status": "FLOWING"})
        sdp_etcd.delete("/pb/pb-m003-20260117-00001")
        sdp_etcd.put("/script/x", {"ignored": True})  # not a watched prefix
        seen = []
        deadline = time.monotonic() + 5
        while len(seen) < 2 and time.monotonic() < deadline:
            seen.extend(changes.get(timeout=5))
    finally:
        connection.close()
    assert [(c.key, c.value is None) for c in seen] == [
        ("/flow/pb-x:data-product:a/state", False),
        ("/pb/pb-m003-20260117-00001", True),
    ]
    assert seen[0].revision < seen[1].revision


def test_keys_under_the_configured_path_are_read_without_it(sdp_etcd, settings):
    sdp_etcd.load({"/pb/pb-a": {"eb_id": "eb-a"}, "/sdp/pb/pb-b": {"eb_id": "eb-b"}})
    settings.SDP_CONFIG_PATH = "/sdp"
    assert set(sdp.Connection().snapshot().values) == {"/pb/pb-b"}


def test_an_unreachable_etcd_fails_fast_with_a_clear_error(settings):
    settings.SDP_ETCD_HOST = "127.0.0.1"
    settings.SDP_CONFIG_PORT = free_port()  # nothing listens
    started = time.monotonic()
    with pytest.raises(sdp.EtcdUnavailable, match=f"127.0.0.1:{settings.SDP_CONFIG_PORT}"):
        sdp.Connection().snapshot()
    assert time.monotonic() - started < 6


def test_a_watch_from_a_compacted_revision_says_so(sdp_etcd):
    first = sdp_etcd.load()
    sdp_etcd.put("/pb/pb-a", {"eb_id": "eb-a"})
    sdp_etcd.compact()
    connection = sdp.Connection()
    changes: queue.Queue = queue.Queue()
    try:
        connection.watch(first, changes)
        ended = changes.get(timeout=5)
    finally:
        connection.close()
    assert isinstance(ended, sdp.WatchCompacted)


def test_a_snapshot_larger_than_a_page_is_read_whole_at_one_revision(sdp_etcd, monkeypatch):
    monkeypatch.setattr(sdp, "SNAPSHOT_PAGE", 7)
    keys = {f"/flow/pb-a:data-product:f{n:03d}": {"n": n} for n in range(40)}
    revision = sdp_etcd.load(keys)
    connection = sdp.Connection()
    read_page = connection._range

    def page_then_write(*args, **kwargs):
        answer = read_page(*args, **kwargs)
        sdp_etcd.put("/flow/pb-a:data-product:f020", {"changed": True})  # after the revision
        return answer

    monkeypatch.setattr(connection, "_range", page_then_write)
    snapshot = connection.snapshot()
    assert snapshot.revision == revision
    assert set(snapshot.values) == set(keys)
    assert json.loads(snapshot.values["/flow/pb-a:data-product:f020"]) == {"n": 20}
    assert sdp_etcd.revision() > revision + 5  # written between the pages
