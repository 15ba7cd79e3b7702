"""Indexing faults, each with real separate processes (runservice = gunicorn +
qcluster, `reindex`, `qcluster`) on a real PostgreSQL database.

The stale limit and the timeout are shortened through the environment, and
INDEXING_TEST_BATCH_DELAY_SECONDS (a test-only knob) slows each batch so a
test can act mid-run on a small volume.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from dpd.models import DataProduct
from dpd.status import api_status
from dpd.synthetic import write_synthetic_volume
from indexing.leader import volume_prefix
from indexing.models import IndexingState, IndexRun
from indexing.services import index_run, request_reindex
from indexing.status import indexing_status, pv_index_status
from tests.service_processes import (
    ServiceSet,
    postgres_services,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def services(transactional_db, volume, tmp_path):
    with postgres_services(
        volume,
        tmp_path,
        INDEXING_BATCH_SIZE="5",
        INDEXING_PARALLEL_WORKERS="2",  # the default on two cores: a pool in the worker
        INDEXING_SCHEDULE_MINUTES="0",
        INDEXING_TEST_BATCH_DELAY_SECONDS="0.3",
        Q_WORKERS="1",
        DPD_COMPAT_OPEN_MANAGEMENT="true",
    ) as started:
        yield started


def _volume_slot(holder: str) -> IndexingState:
    """The volume's slot held by `holder` (its SDP flow watcher holds another)."""
    return IndexingState.objects.get(volume_prefix=volume_prefix(), indexed_by=holder)


def _assert_catalogue_exact(expected: int) -> None:
    assert DataProduct.objects.count() == expected
    assert DataProduct.objects.values("uid").distinct().count() == expected
    assert DataProduct.objects.values("metadata_file").distinct().count() == expected


def test_three_instances_starting_together_scan_once_and_all_name_the_leader(services, volume):
    expected = write_synthetic_volume(volume, 60)
    pods = [
        services.runservice(name, INDEXING_HEARTBEAT_STALE_SECONDS="15")
        for name in ("pod-a", "pod-b", "pod-c")
    ]
    for pod in pods:
        pod.wait_ready()

    runs = wait_for(
        lambda: (
            len(found := list(IndexRun.objects.filter(trigger="startup"))) == 3
            and all(run.is_terminal for run in found)
            and found
        ),
        timeout=90,
        what="three terminal start-up runs",
    )

    completed = [run for run in runs if run.status == "completed"]
    skipped = [run for run in runs if run.status == "skipped"]
    assert len(completed) == 1 and len(skipped) == 2, [(r.status, r.failure_message) for r in runs]
    leader_name = completed[0].indexed_by
    assert leader_name in {"pod-a", "pod-b", "pod-c"}
    assert all(f"({leader_name})" in run.failure_message for run in skipped)
    assert completed[0].files_added == expected
    _assert_catalogue_exact(expected)
    # Every pod serves the shared table: the same counts as this process reads.
    shared = api_status()["pv_interface_status"]["number_of_data_products_on_pv"]
    assert shared > 0
    for pod in pods:
        body = pod.get("/status")[1]
        assert body["indexing"]["coordination_state"]["indexed_by"] == leader_name
        assert body["indexing"]["progress"]["indexing_step"] == "completed"
        assert body["pv_interface_status"]["number_of_data_products_on_pv"] == shared


def test_a_leader_killed_mid_scan_is_replaced_after_the_stale_limit_losing_nothing(
    services, volume
):
    expected = write_synthetic_volume(volume, 60)
    stale = {"INDEXING_HEARTBEAT_STALE_SECONDS": "3"}
    # pod-a must still be scanning once pod-b is up: a second a batch leaves it
    # over 10 s of work, not the ~3 s that a pod-b slow to start (a busy
    # machine) outlived.
    pod_a = services.command("pod-a", "reindex", INDEXING_TEST_BATCH_DELAY_SECONDS="1", **stale)
    wait_for(
        lambda: IndexingState.objects.filter(
            indexed_by="pod-a", indexing_running=True, files_added__gte=10
        ).exists(),
        timeout=60,
        what="pod-a to lead and write a few batches",
    )
    # On another host: an instance on pod-a's machine would prove it dead at
    # once (tests/test_restart_recovery.py) instead of waiting for the limit.
    pod_b = services.runservice("pod-b", host="other-node", **stale)
    status = pod_b.wait_ready()
    assert status["indexing"]["in_progress"] is True
    assert status["indexing"]["coordination_state"]["indexed_by"] == "pod-a"

    pod_a.kill()
    assert pod_a.popen.returncode == -9
    # The slot's heartbeat decides staleness; the run's is written just after
    # it, so it can be a fraction of a millisecond later.
    last_beat = _volume_slot("pod-a").last_heartbeat

    # pod-b's start-up task, watching the slot, or its runservice's periodic
    # leader watch, whichever notices first, takes over.
    taken = wait_for(
        lambda: IndexRun.objects.filter(indexed_by="pod-b", status="completed").first(),
        timeout=60,
        what="pod-b to take over and finish",
    )
    killed = IndexRun.objects.get(trigger="command")
    assert taken.trigger in {"startup", "takeover"}
    assert any("took over the slot from pod-a" in line for line in taken.log)
    assert killed.status == "error" and "pod-a" in killed.failure_message
    # Taken over only once pod-a's last heartbeat was older than the stale limit.
    assert taken.started >= last_beat + timedelta(seconds=3)
    # pod-a's committed batches are kept and not redone; pod-b did the rest.
    assert taken.files_found == expected
    assert taken.files_skipped >= 10 and taken.files_added + taken.files_skipped == expected
    _assert_catalogue_exact(expected)


def test_a_dead_leader_is_replaced_even_when_no_start_up_task_was_watching(services, volume):
    # pod-b started before the run (nothing to watch then), as when a busy
    # leader's worker took pod-b's start-up task off the shared queue.
    expected = write_synthetic_volume(volume, 40)
    stale = {"INDEXING_HEARTBEAT_STALE_SECONDS": "3"}
    pod_b = services.runservice("pod-b", host="other-node", INDEXING_ON_STARTUP="false", **stale)
    pod_b.wait_ready()
    pod_a = services.command("pod-a", "reindex", **stale)
    wait_for(
        lambda: IndexingState.objects.filter(
            indexed_by="pod-a", indexing_running=True, files_added__gte=10
        ).exists(),
        timeout=60,
        what="pod-a to lead and write a few batches",
    )

    pod_a.kill()
    last_beat = _volume_slot("pod-a").last_heartbeat  # the slot's

    taken = wait_for(
        lambda: IndexRun.objects.filter(trigger="takeover", status="completed").first(),
        timeout=60,
        what="pod-b to take over and finish",
    )
    killed = IndexRun.objects.get(trigger="command")
    assert taken.indexed_by == "pod-b"
    assert killed.status == "error" and "pod-a" in killed.failure_message
    assert taken.started >= last_beat + timedelta(seconds=3)
    _assert_catalogue_exact(expected)


def test_a_run_that_hits_the_timeout_keeps_partial_results_and_removes_nothing(
    services, volume, settings
):
    first = write_synthetic_volume(volume, 20, seed=1, prefix="old")
    assert index_run(IndexRun.Trigger.COMMAND).status == "completed"
    gone_folder = sorted(p for p in volume.iterdir() if p.is_dir())[0]
    gone = list(
        DataProduct.objects.filter(metadata_file__startswith=f"{gone_folder.name}/").values_list(
            "metadata_file", flat=True
        )
    )
    shutil.rmtree(gone_folder)
    added = write_synthetic_volume(volume, 60, seed=2, prefix="new")
    services.command("worker", "qcluster", INDEXING_TIMEOUT_SECONDS="2", INDEXING_NICENESS="12")

    ticket = request_reindex(IndexRun.Trigger.API)
    run = wait_for(
        lambda: (r := IndexRun.objects.get(pk=ticket.run_id)).is_terminal and r,
        timeout=60,
        what="the timed-out run to end",
    )

    assert run.status == "timeout_partial_completion" and run.timed_out
    # The background worker yields the CPU to the API's processes.
    assert any(f"CPU niceness {max(12, os.nice(0))}" in line for line in run.log), run.log
    assert run.indexing_step == "timeout_partial_completion"
    assert 0 < run.files_added < added  # partial results are served
    assert run.files_removed == 0
    assert DataProduct.objects.filter(metadata_file__in=gone).count() == len(gone) > 0
    assert indexing_status()["progress"]["indexing_step"] == "timeout_partial_completion"
    assert pv_index_status()["last_index_run"]["timed_out"] is True

    following = index_run(IndexRun.Trigger.COMMAND)

    assert following.status == "completed" and following.files_removed == len(gone)
    _assert_catalogue_exact(first - len(gone) + added)


def test_a_second_reindex_request_while_one_runs_answers_409(services, volume):
    write_synthetic_volume(volume, 40)
    pod = services.runservice("pod-a", INDEXING_ON_STARTUP="false")
    pod.wait_ready()

    status, body, headers = pod.get("/reindexdataproducts")
    assert status == 202
    assert body == "Metadata re-index request has been added to the background tasks"
    location = headers["Location"]
    assert location.startswith("/api/v1/index-runs/")
    assert pod.get("/reindexdataproducts")[0] == 409  # queued
    wait_for(
        lambda: pod.get(location)[1]["status"] == "running", timeout=60, what="the run to start"
    )
    status, body, _ = pod.get("/reindexdataproducts")
    assert status == 409 and "already in progress" in body["detail"]

    done = wait_for(
        lambda: (b := pod.get(location)[1])["terminal_timestamp"] and b,
        timeout=60,
        what="the run to end",
    )
    assert done["status"] == "completed"
    assert pod.get("/reindexdataproducts")[0] == 202  # accepted again once it ended
    assert IndexRun.objects.filter(trigger="api").count() == 2


# --- PostgreSQL restarts during a run (a throwaway cluster this test owns) ----


def _products_in(url: str) -> int:
    import psycopg

    with psycopg.connect(url, connect_timeout=5) as db:
        return db.execute("SELECT count(*) FROM dpd_dataproduct").fetchone()[0]


def test_a_postgresql_restart_mid_run_ends_it_in_error_and_the_next_run_succeeds(
    own_postgres, volume, tmp_path
):
    url = own_postgres.url
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PERSISTENT_STORAGE_PATH": str(volume),
        "INDEXING_BATCH_SIZE": "5",
        "INDEXING_PARALLEL_WORKERS": "2",  # the default on two cores: a pool in the worker
        "INDEXING_SCHEDULE_MINUTES": "0",
        "INDEXING_TEST_BATCH_DELAY_SECONDS": "0.3",
        "INDEXING_HEARTBEAT_STALE_SECONDS": "3",
        "DPD_COMPAT_OPEN_MANAGEMENT": "true",
        "PYTHONUNBUFFERED": "1",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v0"],
        env=env,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    expected = write_synthetic_volume(volume, 60)
    services = ServiceSet(env, tmp_path)
    try:
        pod = services.runservice("pod-a")
        pod.wait_ready()
        wait_for(
            lambda: pod.get("/status")[1]["indexing"]["progress"]["files_added"] >= 10,
            timeout=60,
            what="start-up indexing to write a few batches",
        )

        own_postgres.stop()
        status, body, _ = pod.get("/status")
        assert status == 200 and body["metadata_store_status"]["db_status"]["running"] is False
        assert pod.post_json("/dataproductsearch", {}) == 503
        own_postgres.start()

        runs = wait_for(
            lambda: (
                (b := pod.get("/api/v1/index-runs/")[1])
                and b.get("results")
                and b["results"][0]["terminal_timestamp"]
                and b["results"]
            ),
            timeout=60,
            what="the interrupted run to be recorded",
        )
        failed = runs[0]
        assert failed["trigger"] == "startup" and failed["status"] == "error"
        assert "database connection was lost" in failed["failure_message"]
        assert pod.get("/status")[1]["indexing"]["in_progress"] is False

        status, _, headers = pod.get("/reindexdataproducts")
        assert status == 202
        done = wait_for(
            lambda: (b := pod.get(headers["Location"])[1]) and b["terminal_timestamp"] and b,
            timeout=60,
            what="the next run to end",
        )
        assert done["status"] == "completed"
        assert done["files_added"] + done["files_skipped"] == expected
        assert _products_in(url) == expected
        assert pod.process.alive()  # the service rode it out
    finally:
        services.stop_all()
