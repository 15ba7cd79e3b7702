"""Crash and restart recovery of background indexing, with real processes
(runservice = gunicorn + qcluster, a bare qcluster, `reindex`) on PostgreSQL.

- SIGKILL of a whole service mid-run, then a restart on the same machine: the
  dead holder's slot is reclaimed at once, not after the stale limit.
- An instance on another host cannot prove that, shows the run as stalled
  and waits for the stale limit.
- SIGTERM stops a run at its next batch boundary, records it as interrupted
  and frees the slot; the next start continues without redoing work.
- A task that the broker redelivers after a SIGKILL does not scan alongside
  the run that replaced it.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_q.models import OrmQ, Task

from dpd.models import DataProduct
from dpd.synthetic import write_synthetic_volume
from indexing.leader import volume_prefix
from indexing.models import IndexingState, IndexRun
from indexing.services import request_reindex
from tests.service_processes import postgres_services, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def services(transactional_db, volume, tmp_path):
    # The default stale limit (300 s): nothing here may wait for it unless a
    # test shortens it.
    with postgres_services(
        volume,
        tmp_path,
        INDEXING_BATCH_SIZE="5",
        INDEXING_PARALLEL_WORKERS="2",  # the default on two cores: a pool in the worker
        INDEXING_SCHEDULE_MINUTES="0",
        INDEXING_TEST_BATCH_DELAY_SECONDS="0.25",
        Q_WORKERS="1",
        DPD_COMPAT_OPEN_MANAGEMENT="true",
    ) as started:
        yield started


def _volume_slot() -> IndexingState:
    """The volume's indexing slot (the SDP flow watcher holds a slot of its own)."""
    return IndexingState.objects.get(volume_prefix=volume_prefix())


def _leading(name: str, files: int = 10) -> IndexingState:
    return wait_for(
        lambda: IndexingState.objects.filter(
            indexed_by=name, indexing_running=True, files_added__gte=files
        ).first(),
        timeout=90,
        what=f"{name} to lead and write a few batches",
    )


def _assert_catalogue_exact(expected: int) -> None:
    assert DataProduct.objects.count() == expected
    assert DataProduct.objects.values("uid").distinct().count() == expected
    assert DataProduct.objects.values("metadata_file").distinct().count() == expected


def _running_at_most_one() -> None:
    assert IndexRun.objects.filter(status="running").count() <= 1


def test_a_service_killed_mid_run_and_restarted_on_the_same_host_resumes_at_once(services, volume):
    expected = write_synthetic_volume(volume, 60)
    pod = services.runservice("pod-a")
    pod.wait_ready()
    _leading("pod-a")
    holder_pid = _volume_slot().holder_process["pid"]

    pod.process.kill_tree()  # the whole service, as an OOM kill or a node failure does
    killed = IndexRun.objects.get(status="running")
    last_beat = _volume_slot().last_heartbeat

    restarted = services.runservice("pod-a")
    resumed = wait_for(
        lambda: IndexRun.objects.exclude(pk=killed.pk).filter(started__isnull=False).first(),
        timeout=60,
        what="the restarted service to start a run",
    )

    # Long before the 300 s stale limit: the restart proved the holder dead.
    assert resumed.started < last_beat + timedelta(seconds=60)
    assert resumed.indexed_by == "pod-a" and resumed.trigger == "startup"
    gone = f"its process is gone: pid {holder_pid} on {socket.gethostname()} no longer runs"
    killed.refresh_from_db()
    assert killed.status == "error" and gone in killed.failure_message
    done = wait_for(
        lambda: (run := IndexRun.objects.get(pk=resumed.pk)).is_terminal and run,
        timeout=90,
        what="the resumed run to end",
    )
    assert done.status == "completed"
    # Read from the ended run: the line may be written just after the run starts.
    assert any(f"took over the slot from pod-a ({gone})" in line for line in done.log)
    # What the killed run committed is skipped, not redone.
    assert done.files_skipped >= killed.files_added >= 10
    assert done.files_added + done.files_skipped == expected
    _assert_catalogue_exact(expected)
    assert restarted.get("/status")[1]["indexing"]["progress"]["indexing_step"] == "completed"


def test_a_container_restarted_in_its_pod_proves_its_killed_predecessor_gone(services, volume):
    # Kubernetes restarts a killed container in the same pod: the same host
    # name and network, a new pid namespace where the old pid means nothing.
    expected = write_synthetic_volume(volume, 60)
    pod = services.runservice("pod-a")
    pod.wait_ready()
    _leading("pod-a")
    pod.process.kill_tree()
    killed = IndexRun.objects.get(status="running")
    last_beat = _volume_slot().last_heartbeat

    services.runservice("pod-a", new_container=True).wait_ready()
    resumed = wait_for(
        lambda: IndexRun.objects.exclude(pk=killed.pk).filter(started__isnull=False).first(),
        timeout=60,
        what="the restarted container to start a run",
    )

    assert resumed.started < last_beat + timedelta(seconds=60)
    assert any("its container restarted" in line for line in resumed.log), resumed.log
    done = wait_for(
        lambda: (run := IndexRun.objects.get(pk=resumed.pk)).is_terminal and run,
        timeout=90,
        what="the resumed run to end",
    )
    assert done.status == "completed" and done.files_skipped >= killed.files_added
    _assert_catalogue_exact(expected)


def test_an_instance_on_another_host_shows_the_killed_run_stalled_and_waits_for_the_stale_limit(
    services, volume
):
    expected = write_synthetic_volume(volume, 60)
    limits = {"INDEXING_HEARTBEAT_STALE_SECONDS": "8", "INDEXING_STALLED_SECONDS": "2"}
    pod_a = services.command("pod-a", "reindex", INDEXING_TEST_BATCH_DELAY_SECONDS="1", **limits)
    _leading("pod-a")
    pod_b = services.runservice("pod-b", host="other-node", INDEXING_ON_STARTUP="false", **limits)
    pod_b.wait_ready()

    pod_a.kill()
    last_beat = _volume_slot().last_heartbeat

    block = wait_for(
        lambda: (b := pod_b.get("/status")[1]) and b["indexing"]["stalled"] and b["indexing"],
        timeout=30,
        what="pod-b's /status to show the run as stalled",
    )
    assert block["in_progress"] is False
    assert block["progress"]["indexing_step"] == "stalled"
    assert block["coordination_state"]["indexing_running"] is False
    stalled = block["stalled"]
    assert stalled["indexed_by"] == "pod-a" and stalled["holder_pid"] == pod_a.pid
    assert stalled["holder_host"] == socket.gethostname()
    assert parse_datetime(stalled["last_heartbeat"]) == last_beat
    assert parse_datetime(stalled["takeover_at"]) == last_beat + timedelta(seconds=8)

    taken = wait_for(
        lambda: IndexRun.objects.filter(indexed_by="pod-b", status="completed").first(),
        timeout=90,
        what="pod-b to take over once the stale limit passed",
    )
    assert taken.started >= last_beat + timedelta(seconds=8)
    assert any("took over the slot from pod-a (its heartbeat went stale)" in x for x in taken.log)
    _assert_catalogue_exact(expected)


def test_sigterm_stops_the_run_at_a_batch_boundary_and_the_next_start_continues_at_once(
    services, volume
):
    expected = write_synthetic_volume(volume, 60)
    pod = services.runservice("pod-a", INDEXING_TEST_BATCH_DELAY_SECONDS="1")
    pod.wait_ready()
    _leading("pod-a")

    asked = time.monotonic()
    pod.process.popen.send_signal(signal.SIGTERM)
    code = pod.process.popen.wait(timeout=60)
    stopped_in = time.monotonic() - asked

    # A clean stop, before runservice's grace (10 s here) or an orchestrator's
    # 30 s would kill anything.
    assert code == 0 and "did not stop within" not in pod.process.output()
    assert stopped_in < 30
    run = IndexRun.objects.get(trigger="startup")
    assert run.status == "interrupted" and "SIGTERM received" in run.failure_message
    assert run.terminal_timestamp and run.duration is not None
    # Its counts are what it committed, batch by batch.
    assert 10 <= run.files_added == DataProduct.objects.count() < expected
    state = _volume_slot()
    assert not state.indexing_running and state.indexing_step == "interrupted"
    assert state.files_added == run.files_added
    # The task ended normally: acknowledged, never redelivered.
    assert not OrmQ.objects.exists()
    assert f"run {run.pk} interrupted" in Task.objects.get().result

    pod = services.runservice("pod-a")
    following = wait_for(
        lambda: IndexRun.objects.filter(trigger="startup", status="completed").first(),
        timeout=90,
        what="the next start to finish the volume",
    )
    assert not any("took over" in line for line in following.log)  # the slot was free
    assert following.files_skipped == run.files_added
    assert following.files_added == expected - run.files_added
    _assert_catalogue_exact(expected)


@pytest.mark.parametrize(
    "whole_group", [False, True], ids=["to-its-main-process", "to-its-process-group"]
)
def test_a_bare_worker_stopped_mid_run_records_it_interrupted_and_exits(
    services, volume, whole_group
):
    # Kubernetes and Docker signal the container's first process; systemd
    # signals every process of the unit.
    write_synthetic_volume(volume, 60)
    worker = services.command("worker", "qcluster", INDEXING_TEST_BATCH_DELAY_SECONDS="1")
    ticket = request_reindex(IndexRun.Trigger.API)
    _leading("worker")

    if whole_group:
        os.killpg(worker.pid, signal.SIGTERM)
    else:
        worker.popen.send_signal(signal.SIGTERM)

    run = wait_for(
        lambda: (r := IndexRun.objects.get(pk=ticket.run_id)).is_terminal and r,
        timeout=30,
        what="the run to end",
    )
    assert run.status == "interrupted" and 10 <= run.files_added == DataProduct.objects.count()
    assert not _volume_slot().indexing_running
    worker.popen.wait(timeout=30)
    wait_for(
        lambda: not _live_in_group(worker.pid),
        timeout=30,
        what="every process of the worker to exit",
    )
    if not whole_group:  # django-q2 stopped as usual: the task's result is saved
        assert "interrupted" in Task.objects.get().result


def _live_in_group(pgid: int) -> list[int]:
    live = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                live.append(int(entry.name))
    return live


def test_a_task_redelivered_after_a_sigkill_does_not_scan_alongside_its_successor(services, volume):
    expected = write_synthetic_volume(volume, 60)
    pod = services.runservice("pod-a")
    pod.wait_ready()
    _leading("pod-a")
    pod.process.kill_tree()
    killed = IndexRun.objects.get(status="running")
    # The killed start-up task was never acknowledged: the broker will deliver it again.
    unacknowledged = list(OrmQ.objects.values_list("pk", flat=True))
    assert unacknowledged

    # Two worker processes: a redelivered task is not held back behind the run.
    pod = services.runservice("pod-a", Q_WORKERS="2")
    successor = wait_for(
        lambda: IndexRun.objects.filter(status="running").exclude(pk=killed.pk).first(),
        timeout=60,
        what="the restarted service's run",
    )
    # The ORM broker redelivers a task whose lock expired (Q_CLUSTER retry,
    # hours by default): expire it now.
    OrmQ.objects.filter(pk__in=unacknowledged).update(lock=timezone.now() - timedelta(seconds=1))

    def redelivered_run_ended():
        _running_at_most_one()
        return IndexRun.objects.filter(trigger="startup", status="skipped").first()

    redelivered = wait_for(redelivered_run_ended, timeout=120, what="the redelivered task's run")

    assert redelivered.indexed_by == "pod-a" and redelivered.files_processed == 0
    assert f"indexed the volume after this request (run {successor.pk})" in (
        redelivered.failure_message
    )
    successor.refresh_from_db()
    assert successor.status == "completed"
    assert IndexRun.objects.filter(status="completed").count() == 1
    _assert_catalogue_exact(expected)


def test_a_foreground_reindex_stopped_by_ctrl_c_records_its_run_interrupted_and_fails(
    services, volume
):
    write_synthetic_volume(volume, 60)
    command = services.command("operator", "reindex")
    _leading("operator")

    command.popen.send_signal(signal.SIGINT)  # Ctrl-C
    code = command.popen.wait(timeout=30)

    run = IndexRun.objects.get(trigger="command")
    assert code != 0 and "Interrupted: SIGINT received" in command.output()
    assert run.status == "interrupted" and 10 <= run.files_added == DataProduct.objects.count()
    assert not _volume_slot().indexing_running
