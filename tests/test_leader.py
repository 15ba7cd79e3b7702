"""Leadership rules: one instance per volume indexes; followers say who leads;
a dead leader's slot is reclaimed; every run is recorded."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection, transaction
from django.utils import timezone

from dpd.models import DataProduct
from indexing import holder, leader, services
from indexing.models import IndexingState, IndexRun
from indexing.services import IndexingBusy, index_run, request_reindex
from tests.service_processes import wait_for

pytestmark = pytest.mark.django_db


def _age_heartbeat(prefix: str, seconds: int) -> None:
    """Pretend the holder last heartbeated `seconds` ago (it died then)."""
    old = timezone.now() - timedelta(seconds=seconds)
    IndexingState.objects.filter(volume_prefix=prefix).update(last_heartbeat=old)
    IndexRun.objects.filter(volume_prefix=prefix, status="running").update(last_heartbeat=old)


def test_the_volume_prefix_is_dpd_and_twelve_hex_digits_of_the_configured_path():
    prefix = leader.volume_prefix("/mnt/data/product/")
    assert prefix.startswith("dpd_") and len(prefix) == 16
    assert prefix == leader.volume_prefix("/mnt/data/product/")
    assert prefix != leader.volume_prefix("/mnt/data/product")


def test_the_instance_name_comes_from_dpd_instance_name(settings):
    settings.DPD_INSTANCE_NAME = "dpd-api-7f9c-x2k4q"
    assert leader.instance_name() == "dpd-api-7f9c-x2k4q"
    settings.DPD_INSTANCE_NAME = ""
    assert leader.instance_name().endswith(f"-{__import__('os').getpid()}")


def test_the_first_claim_leads_and_the_next_instance_is_told_the_leaders_name():
    first = leader.claim("dpd_000000000001", "pod-a")
    second = leader.claim("dpd_000000000001", "pod-b")
    assert first.claimed and not second.claimed
    assert second.leader == "pod-a"
    assert IndexingState.objects.get(volume_prefix="dpd_000000000001").indexed_by == "pod-a"


def test_a_released_slot_goes_to_the_next_claim():
    first = leader.claim("dpd_000000000002", "pod-a")
    leader.release(first.lease, step="completed", completed=True)
    second = leader.claim("dpd_000000000002", "pod-b")
    assert second.claimed and not second.lease.reclaimed
    state = IndexingState.objects.get(volume_prefix="dpd_000000000002")
    assert state.indexed_by == "pod-b" and state.indexing_running


def test_a_live_leader_keeps_its_slot_and_the_volume_counts_as_busy():
    lease = leader.claim("dpd_000000000003", "pod-a").lease
    leader.heartbeat(lease, files_processed=10)
    assert leader.is_busy("dpd_000000000003")
    assert not leader.claim("dpd_000000000003", "pod-b").claimed


def test_a_leader_whose_heartbeat_went_stale_loses_its_slot_and_stops(settings):
    settings.INDEXING_HEARTBEAT_STALE_SECONDS = 300
    stalled = leader.claim("dpd_000000000004", "pod-a").lease
    _age_heartbeat("dpd_000000000004", 301)
    assert not leader.is_busy("dpd_000000000004")

    taker = leader.claim("dpd_000000000004", "pod-b")

    assert taker.claimed and taker.lease.reclaimed and taker.lease.previous_holder == "pod-a"
    with pytest.raises(leader.LostLeadership, match="pod-b"):
        leader.heartbeat(stalled, files_processed=1)
    # The stalled leader's late release must not free the new leader's slot.
    assert not leader.release(stalled, step="error", completed=False)
    assert leader.is_busy("dpd_000000000004")


def test_a_heartbeat_just_inside_the_stale_limit_keeps_the_slot(settings):
    settings.INDEXING_HEARTBEAT_STALE_SECONDS = 300
    leader.claim("dpd_000000000005", "pod-a")
    _age_heartbeat("dpd_000000000005", 290)
    assert not leader.claim("dpd_000000000005", "pod-b").claimed


def test_force_takes_the_slot_from_a_live_looking_leader():
    leader.claim("dpd_000000000006", "pod-a")
    forced = leader.claim("dpd_000000000006", "operator", force=True)
    assert forced.claimed and forced.lease.previous_holder == "pod-a"


def test_two_instances_sharing_a_name_cannot_heartbeat_for_each_other():
    first = leader.claim("dpd_000000000007", "pod-a", force=True).lease
    leader.claim("dpd_000000000007", "pod-a", force=True)
    with pytest.raises(leader.LostLeadership):
        leader.heartbeat(first)


# --- runs under the leadership rules (the real indexer, the sample volume) ---


def test_a_run_indexes_the_volume_and_records_itself(sample_volume, settings):
    settings.DPD_INSTANCE_NAME = "pod-a"
    run = index_run(IndexRun.Trigger.COMMAND)

    assert run.status == "completed" and run.indexed_by == "pod-a"
    assert run.files_added == DataProduct.objects.count() == 15
    assert {e["path"] for e in run.errors} == {
        "eb-none-19700101-00001/ska-data-product.yaml",
        "eb-none-19700101-00002/ska-data-product.yaml",
        "eb-none-19700101-00003/ska-data-product.yaml",
    }
    assert run.terminal_timestamp and run.duration is not None and run.log
    state = IndexingState.objects.get(volume_prefix=leader.volume_prefix())
    assert not state.indexing_running and state.completed_at and state.files_indexed == 18
    assert state.indexing_step == "completed"


def test_a_follower_records_a_skipped_run_naming_the_leader(sample_volume, settings):
    leader.claim(leader.volume_prefix(), "pod-a")
    settings.DPD_INSTANCE_NAME = "pod-b"

    run = index_run(IndexRun.Trigger.SCHEDULE)

    assert run.status == "skipped" and run.indexed_by == "pod-b"
    assert "pod-a" in run.failure_message
    assert DataProduct.objects.count() == 0


def test_a_new_leader_closes_the_run_its_dead_predecessor_left_running(sample_volume, settings):
    settings.DPD_INSTANCE_NAME = "pod-a"
    lease = leader.claim(leader.volume_prefix(), "pod-a").lease
    orphan = IndexRun.objects.create(
        trigger="startup", status="running", volume_prefix=lease.volume_prefix, indexed_by="pod-a"
    )
    _age_heartbeat(lease.volume_prefix, settings.INDEXING_HEARTBEAT_STALE_SECONDS + 1)
    settings.DPD_INSTANCE_NAME = "pod-b"

    run = index_run(IndexRun.Trigger.SCHEDULE)

    orphan.refresh_from_db()
    assert run.status == "completed" and DataProduct.objects.count() == 15
    assert orphan.status == "error" and "pod-a" in orphan.failure_message
    assert any("took over the slot from pod-a" in line for line in run.log)


def test_a_second_reindex_request_while_one_is_queued_is_refused(sample_volume):
    ticket = request_reindex(IndexRun.Trigger.API)
    with pytest.raises(IndexingBusy):
        request_reindex(IndexRun.Trigger.API)
    assert IndexRun.objects.get(pk=ticket.run_id).status == "queued"
    assert IndexRun.objects.count() == 1


def test_a_reindex_request_while_a_leader_runs_is_refused(sample_volume):
    leader.claim(leader.volume_prefix(), "pod-a")
    with pytest.raises(IndexingBusy, match="pod-a"):
        request_reindex(IndexRun.Trigger.API)


def test_a_reindex_request_after_the_leader_died_is_accepted(sample_volume, settings):
    prefix = leader.volume_prefix()
    leader.claim(prefix, "pod-a")
    dead = IndexRun.objects.create(
        trigger="startup", status="running", volume_prefix=prefix, indexed_by="pod-a"
    )
    _age_heartbeat(prefix, settings.INDEXING_HEARTBEAT_STALE_SECONDS + 1)

    ticket = request_reindex(IndexRun.Trigger.API)

    dead.refresh_from_db()
    assert dead.status == "error" and "stopped heartbeating" in dead.failure_message
    assert IndexRun.objects.get(pk=ticket.run_id).status == "queued"


def test_a_queued_run_delivered_twice_is_carried_out_once(sample_volume):
    ticket = request_reindex(IndexRun.Trigger.API)

    first = index_run(IndexRun.Trigger.API, run_id=ticket.run_id)
    again = index_run(IndexRun.Trigger.API, run_id=ticket.run_id)

    assert first.status == again.status == "completed"
    assert IndexRun.objects.count() == 1
    assert DataProduct.objects.count() == 15


def test_a_scheduled_run_serves_a_waiting_request_instead_of_adding_another(sample_volume):
    ticket = request_reindex(IndexRun.Trigger.API)

    run = index_run(IndexRun.Trigger.SCHEDULE)

    assert run.pk == ticket.run_id and run.status == "completed"
    assert IndexRun.objects.count() == 1


def test_a_missing_volume_ends_the_run_with_a_clear_error(settings, tmp_path):
    settings.PERSISTENT_STORAGE_PATH = str(tmp_path / "not-mounted")

    run = index_run(IndexRun.Trigger.COMMAND)

    assert run.status == "error"
    assert "volume is unavailable" in run.failure_message and "not-mounted" in run.failure_message
    state = IndexingState.objects.get(volume_prefix=leader.volume_prefix())
    assert not state.indexing_running and state.indexing_step == "error"


def test_a_startup_run_is_skipped_when_the_index_was_refreshed_after_it_was_asked(
    sample_volume, settings
):
    asked = timezone.now()
    settings.DPD_INSTANCE_NAME = "pod-a"
    index_run(IndexRun.Trigger.STARTUP, requested_at=asked)
    settings.DPD_INSTANCE_NAME = "pod-b"

    late = index_run(IndexRun.Trigger.STARTUP, wait=True, requested_at=asked)

    assert late.status == "skipped" and "pod-a" in late.failure_message


def test_a_startup_run_asked_while_another_instance_indexed_is_served_by_that_run(
    sample_volume, settings
):
    # pod-a's run was already going when pod-b started and asked; it ended after.
    settings.DPD_INSTANCE_NAME = "pod-a"
    leaders_run = index_run(IndexRun.Trigger.STARTUP)
    asked = leaders_run.terminal_timestamp - timedelta(microseconds=1)
    assert leaders_run.started < asked
    settings.DPD_INSTANCE_NAME = "pod-b"

    follower = index_run(IndexRun.Trigger.STARTUP, wait=True, requested_at=asked)

    assert follower.status == "skipped"
    assert f"(pod-a) indexed the volume after this request (run {leaders_run.pk})" in (
        follower.failure_message
    )
    assert IndexRun.objects.filter(status="completed").count() == 1


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="the in-memory SQLite test database locks whole tables: the leader could not commit",
)
@pytest.mark.django_db(transaction=True)
def test_a_leader_completing_between_a_followers_check_and_its_claim_is_not_scanned_again(
    sample_volume, settings, monkeypatch
):
    # pod-a leads; pod-b's start-up task looks for a completed run, finds none,
    # and pod-a completes (run and slot in one commit, as record_result writes
    # them) before pod-b claims the slot it just freed.
    prefix = leader.volume_prefix()
    lease = leader.claim(prefix, "pod-a").lease
    leaders_run = IndexRun.objects.create(
        trigger="startup", volume_prefix=prefix, status="running", indexed_by="pod-a"
    )
    asked = timezone.now()

    def leader_completes() -> None:
        with transaction.atomic():
            IndexRun.objects.filter(pk=leaders_run.pk).update(
                status="completed", terminal_timestamp=timezone.now()
            )
            leader.release(lease, step="completed", completed=True)
        connection.close()

    completing = threading.Thread(target=leader_completes)
    looked = services._completed_since

    def completed_since(prefix: str, moment):
        found = looked(prefix, moment)
        if found is None and completing.ident is None:  # once: not started yet
            completing.start()
            completing.join(timeout=2)  # blocked while pod-b holds the slot's row
        return found

    monkeypatch.setattr(services, "_completed_since", completed_since)
    settings.DPD_INSTANCE_NAME = "pod-b"

    follower = index_run(IndexRun.Trigger.STARTUP, wait=True, requested_at=asked)
    completing.join(timeout=10)

    assert follower.status == "skipped"
    assert f"(pod-a) indexed the volume after this request (run {leaders_run.pk})" in (
        follower.failure_message
    )
    assert list(IndexRun.objects.values_list("status", flat=True).order_by("pk")) == [
        "completed",
        "skipped",
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [("20", "INDEXING_NICENESS=20 must be at most 19"), ("low", "INDEXING_NICENESS='low'")],
)
def test_a_background_priority_out_of_range_stops_start_up_naming_the_variable(value, message):
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=django_settings.BASE_DIR,
        env={**os.environ, "INDEXING_NICENESS": value},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


# --- proving a holder gone: a restart on the same machine need not wait ------


def _claim_as(prefix: str, name: str, **process: object) -> leader.Lease:
    """Claim the slot and record `process` (this process's description with
    some fields replaced) as where its holder runs."""
    lease = leader.claim(prefix, name).lease
    recorded = {**holder.describe_this_process(), **process}
    IndexingState.objects.filter(volume_prefix=prefix).update(holder_process=recorded)
    return lease


def _exited_child() -> tuple[int, int]:
    """The pid and start time of a process that ran on this machine and is gone."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    ticks = holder._start_ticks(child.pid)
    child.kill()
    child.wait()
    return child.pid, ticks


def test_a_restart_on_the_same_machine_reclaims_a_killed_holders_slot_at_once():
    pid, ticks = _exited_child()
    _claim_as("dpd_0000000000a1", "pod-a", pid=pid, start_ticks=ticks)

    restarted = leader.claim("dpd_0000000000a1", "pod-a")

    assert restarted.claimed and restarted.lease.reclaimed
    assert restarted.lease.reason == (
        f"its process is gone: pid {pid} on {socket.gethostname()} no longer runs"
    )


def test_a_killed_holder_not_yet_reaped_is_gone():
    # Its parent died with it, and the orphan waits for PID 1 to reap it:
    # seconds where PID 1 reaps lazily (seen here), for ever where PID 1 does
    # not reap at all, as in a container without an init. It runs nothing.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    ticks = holder._start_ticks(child.pid)
    child.kill()
    wait_for(lambda: _state(child.pid) == "Z", timeout=10, what="the child to be a zombie")
    try:
        _claim_as("dpd_0000000000a7", "pod-a", pid=child.pid, start_ticks=ticks)

        restarted = leader.claim("dpd_0000000000a7", "pod-a")

        assert restarted.claimed and restarted.lease.reason == (
            f"its process is gone: pid {child.pid} on {socket.gethostname()} no longer runs"
        )
    finally:
        child.wait()


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_a_dead_holder_on_this_machine_does_not_make_the_volume_busy():
    pid, ticks = _exited_child()
    _claim_as("dpd_0000000000a2", "pod-a", pid=pid, start_ticks=ticks)
    assert not leader.is_busy("dpd_0000000000a2")


def test_a_live_holder_on_the_same_machine_keeps_its_slot():
    _claim_as("dpd_0000000000a3", "pod-a")  # this very process: alive

    assert not leader.claim("dpd_0000000000a3", "pod-b").claimed
    assert leader.is_busy("dpd_0000000000a3")


def test_a_reused_pid_does_not_pass_for_the_holder():
    # The recorded pid runs, but it is another process started later.
    _claim_as("dpd_0000000000a4", "pod-a", start_ticks=holder._start_ticks(os.getpid()) - 1)

    taker = leader.claim("dpd_0000000000a4", "pod-b")

    assert taker.claimed and "the pid was reused" in taker.lease.reason


def test_an_instance_on_another_host_cannot_prove_anything_and_waits_for_the_stale_limit():
    pid, ticks = _exited_child()
    _claim_as("dpd_0000000000a5", "pod-a", host="another-node", pid=pid, start_ticks=ticks)

    assert not leader.claim("dpd_0000000000a5", "pod-b").claimed
    assert leader.is_busy("dpd_0000000000a5")


def test_a_holder_recorded_before_the_machine_rebooted_is_gone():
    _claim_as("dpd_0000000000a6", "pod-a", boot_id="an-earlier-boot")

    taker = leader.claim("dpd_0000000000a6", "pod-a")

    assert taker.claimed and "before the machine rebooted" in taker.lease.reason


def test_another_boot_on_a_machine_without_an_id_proves_nothing():
    _claim_as("dpd_0000000000a7", "pod-a", boot_id="an-earlier-boot", machine_id="")
    assert not leader.claim("dpd_0000000000a7", "pod-b").claimed


def test_a_restarted_container_sharing_the_pods_network_proves_its_predecessor_gone():
    # Another pid namespace (a new container), the same network (the pod's):
    # the holder's lease socket decides, and nobody holds it.
    lease = _claim_as("dpd_0000000000a8", "pod-a", pid_ns="pid:[1]")
    holder.drop_socket(lease.token)  # the holder died: the kernel freed its socket

    taker = leader.claim("dpd_0000000000a8", "pod-a")

    assert taker.claimed and "its container restarted" in taker.lease.reason


def test_a_live_holder_in_another_container_of_the_pod_keeps_its_slot():
    _claim_as("dpd_0000000000a9", "pod-a", pid_ns="pid:[1]")  # its socket is still bound

    assert not leader.claim("dpd_0000000000a9", "pod-b").claimed


def test_a_released_slot_frees_the_holders_socket():
    lease = leader.claim("dpd_0000000000aa", "pod-a").lease
    assert not holder._socket_free(lease.token)
    leader.release(lease, step="completed", completed=True)
    assert holder._socket_free(lease.token)
