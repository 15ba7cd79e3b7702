"""The index-run job resource, the /status indexing blocks, `indexstatus`,
the declared schedule and the curators' admin."""

from __future__ import annotations

import json
import os
import re
import socket
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_q.models import OrmQ, Schedule, Task

from indexing import leader
from indexing.models import IndexingState, IndexRun
from indexing.services import index_run, request_reindex
from indexing.status import indexing_status, pv_index_status
from indexing.tasks import sync_schedules

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(django_user_model):
    """A staff API client: run logs name files, so runs are not public."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(django_user_model.objects.create_user("op", is_staff=True))
    return client


def _run(**fields) -> IndexRun:
    defaults = {"trigger": "schedule", "status": "completed", "volume_prefix": "dpd_0123456789ab"}
    return IndexRun.objects.create(**{**defaults, **fields})


def test_the_run_list_is_newest_first_and_paged_with_the_server_time(operator):
    moment = timezone.now()
    older = _run(created=moment - timedelta(hours=1))
    tie_low = _run(created=moment)
    tie_high = _run(created=moment)

    before = timezone.now()
    page = operator.get("/api/v1/index-runs/?limit=2").json()

    assert [row["id"] for row in page["results"]] == [tie_high.pk, tie_low.pk]
    assert page["count"] == 3 and page["next"]
    assert parse_datetime(page["timestamp"]) >= before
    rest = operator.get(page["next"]).json()
    assert [row["id"] for row in rest["results"]] == [older.pk]


def test_listing_runs_costs_two_queries_however_many_there_are(operator, django_assert_num_queries):
    for _ in range(5):
        _run(errors=[{"path": "a/ska-data-product.yaml", "reason": "bad"}], log=["x"])
    with django_assert_num_queries(2):
        assert operator.get("/api/v1/index-runs/").status_code == 200


def test_a_run_shows_its_status_progress_failed_files_and_log(operator, sample_volume):
    run = index_run(IndexRun.Trigger.COMMAND)

    body = operator.get(f"/api/v1/index-runs/{run.pk}/").json()

    assert body["status"] == "completed" and body["trigger"] == "command"
    assert parse_datetime(body["created"]) <= parse_datetime(body["terminal_timestamp"])
    assert body["failure_message"] == ""
    assert (body["files_found"], body["files_added"], body["files_processed"]) == (18, 15, 18)
    assert {"path": "eb-none-19700101-00003/ska-data-product.yaml", "reason": "empty document"} in (
        body["errors"]
    )
    assert any("completed" in line for line in body["log"])
    assert re.fullmatch(r"\d+:\d\d:\d\d(\.\d+)?", body["duration"])


def test_a_queued_run_has_no_terminal_timestamp_yet(operator, sample_volume):
    ticket = request_reindex(IndexRun.Trigger.API)

    body = operator.get(f"/api/v1/index-runs/{ticket.run_id}/").json()

    assert body["status"] == "queued" and body["terminal_timestamp"] is None
    assert OrmQ.objects.count() == 1  # the task is in the broker's queue for qcluster


def test_anonymous_clients_cannot_read_run_logs(client):
    run = _run(errors=[{"path": "hidden-eb/ska-data-product.yaml", "reason": "bad"}])
    assert client.get("/api/v1/index-runs/").status_code in (401, 403)
    assert client.get(f"/api/v1/index-runs/{run.pk}/").status_code in (401, 403)


def test_an_unknown_run_answers_404_with_a_detail(operator):
    response = operator.get("/api/v1/index-runs/999999/")
    assert response.status_code == 404 and "detail" in response.json()


def test_a_non_numeric_run_id_answers_404(operator):
    assert operator.get("/api/v1/index-runs/1%3B%20DROP%20TABLE/").status_code == 404


def test_status_reports_a_live_run_with_its_leader_and_progress(sample_volume, settings):
    lease = leader.claim(leader.volume_prefix(), "pod-a").lease
    leader.heartbeat(
        lease,
        indexing_step="scanning_and_ingesting (40 found, 20 ingested)",
        files_processed=20,
        total_files=40,
        files_added=20,
    )

    block = indexing_status()

    assert block["in_progress"] is True
    assert block["progress"] == {
        "files_processed": 20,
        "total_files": 40,
        "files_added": 20,
        "files_updated": 0,
        "files_skipped": 0,
        "indexing_step": "scanning_and_ingesting (40 found, 20 ingested)",
    }
    coordination = block["coordination_state"]
    assert coordination["volume_prefix"] == leader.volume_prefix()
    assert coordination["indexed_by"] == "pod-a" and coordination["indexing_running"] is True
    assert coordination["completed_at"] is None and parse_datetime(coordination["started_at"])


def test_status_after_a_run_reports_completion_and_the_last_run(sample_volume):
    index_run(IndexRun.Trigger.STARTUP)

    block = indexing_status()
    pv = pv_index_status()

    assert block["in_progress"] is False
    assert block["progress"]["indexing_step"] == "completed"
    assert block["progress"]["files_added"] == 15
    assert block["coordination_state"]["files_indexed"] == 18
    assert parse_datetime(block["coordination_state"]["completed_at"])
    assert re.fullmatch(r"\d+:\d\d:\d\d(\.\d+)?", pv["last_index_duration"])
    assert parse_datetime(pv["index_time_modified"])
    assert pv["last_index_run"]["timed_out"] is False
    assert pv["last_index_run"]["files_ingested"] == 15
    assert pv["last_index_run"]["work_units"] >= 1
    assert pv["indexing_timeout_seconds"] == 21600


def test_status_does_not_report_a_dead_leader_as_indexing(sample_volume, settings):
    leader.claim(leader.volume_prefix(), "pod-a")
    IndexingState.objects.update(last_heartbeat=timezone.now() - timedelta(hours=1))

    block = indexing_status()

    assert block["in_progress"] is False
    assert block["progress"]["indexing_step"] == "stalled"
    assert block["coordination_state"]["indexed_by"] == "pod-a"
    assert block["coordination_state"]["indexing_running"] is False
    assert block["stalled"]["takeover_due"] is True


def test_status_calls_a_run_silent_for_a_few_batches_stalled_and_says_when_it_is_taken_over(
    sample_volume, settings
):
    settings.INDEXING_STALLED_SECONDS = 30
    settings.INDEXING_HEARTBEAT_STALE_SECONDS = 300
    leader.claim(leader.volume_prefix(), "pod-a")
    silent_since = timezone.now() - timedelta(seconds=45)
    IndexingState.objects.update(last_heartbeat=silent_since)

    block = indexing_status()

    assert block["in_progress"] is False
    assert block["progress"]["indexing_step"] == "stalled"
    assert block["coordination_state"]["indexing_running"] is False
    stalled = block["stalled"]
    assert stalled["indexed_by"] == "pod-a" and stalled["holder_pid"] == os.getpid()
    assert stalled["holder_host"] == socket.gethostname()
    assert parse_datetime(stalled["last_heartbeat"]) == silent_since
    assert 45 <= stalled["seconds_since_heartbeat"] < 60
    assert parse_datetime(stalled["takeover_at"]) == silent_since + timedelta(seconds=300)
    assert stalled["takeover_due"] is False


def test_a_run_that_heartbeated_within_the_stalled_limit_is_running(sample_volume, settings):
    settings.INDEXING_STALLED_SECONDS = 30
    leader.claim(leader.volume_prefix(), "pod-a")
    IndexingState.objects.update(last_heartbeat=timezone.now() - timedelta(seconds=20))

    block = indexing_status()

    assert block["in_progress"] is True and block["stalled"] is None
    assert block["coordination_state"]["indexing_running"] is True


def test_status_counts_a_queued_request_as_in_progress(sample_volume):
    request_reindex(IndexRun.Trigger.API)
    assert indexing_status()["in_progress"] is True


def test_status_before_any_run_is_idle_with_the_volume_prefix(sample_volume):
    block = indexing_status()
    assert block["in_progress"] is False and block["progress"]["indexing_step"] == "idle"
    assert block["coordination_state"]["volume_prefix"] == leader.volume_prefix()
    assert pv_index_status()["last_index_run"] is None


def test_each_status_block_costs_one_query(sample_volume, django_assert_num_queries):
    index_run(IndexRun.Trigger.STARTUP)
    with django_assert_num_queries(1):
        indexing_status()
    with django_assert_num_queries(1):
        pv_index_status()


def test_indexstatus_prints_the_state_operators_need(sample_volume, capsys):
    index_run(IndexRun.Trigger.COMMAND)

    call_command("indexstatus", "--json")
    state = json.loads(capsys.readouterr().out)
    call_command("indexstatus")
    text = capsys.readouterr().out

    assert state["indexing"] == indexing_status()
    assert state["runs"][0]["status"] == "completed"
    assert "indexing_step=completed" in text and "completed (command" in text
    assert "STALLED" not in text


def test_indexstatus_shows_a_silent_holder_as_stalled_with_its_process_and_takeover(
    sample_volume, capsys, settings
):
    settings.INDEXING_HEARTBEAT_STALE_SECONDS = 300
    leader.claim(leader.volume_prefix(), "pod-a")
    IndexingState.objects.update(last_heartbeat=timezone.now() - timedelta(seconds=100))

    call_command("indexstatus")
    text = capsys.readouterr().out

    assert "indexing_step=stalled" in text and "indexing_running=False" in text
    stalled = next(line for line in text.splitlines() if line.startswith("STALLED"))
    assert f"pod-a (pid {os.getpid()} on {socket.gethostname()})" in stalled
    assert "has not heartbeated for 100" in stalled and "takeover by another instance at" in stalled


def test_the_periodic_schedule_is_upserted_by_name_and_zero_removes_it(settings):
    settings.INDEXING_SCHEDULE_MINUTES = 30
    sync_schedules()
    settings.INDEXING_SCHEDULE_MINUTES = 15
    sync_schedules()

    schedule = Schedule.objects.get(func="indexing.tasks.scheduled_index")
    assert schedule.minutes == 15 and schedule.schedule_type == Schedule.MINUTES

    settings.INDEXING_SCHEDULE_MINUTES = 0
    sync_schedules()
    assert not Schedule.objects.filter(func="indexing.tasks.scheduled_index").exists()


@pytest.fixture
def curator_client(client, django_user_model):
    curator = django_user_model.objects.create_superuser("curator", "c@example.org", "pw")
    client.force_login(curator)
    return client


def test_curators_see_the_schedule_with_its_last_result(curator_client, settings):
    sync_schedules()
    last = Task.objects.create(
        id="0" * 32,
        name="periodic-re-index-1",
        func="indexing.tasks.scheduled_index",
        started=timezone.now(),
        stopped=timezone.now(),
        result="run 7 completed (added=3 updated=0 skipped=12)",
        success=True,
    )
    Schedule.objects.filter(func="indexing.tasks.scheduled_index").update(task=last.id)

    response = curator_client.get("/admin/django_q/schedule/")

    assert response.status_code == 200
    assert b"indexing: periodic re-index" in response.content
    assert b"run 7 completed (added=3 updated=0 skipped=12)" in response.content


def test_the_admin_action_queues_a_reindex_now(curator_client, sample_volume):
    sync_schedules()
    schedule = Schedule.objects.get(func="indexing.tasks.scheduled_index")

    curator_client.post(
        "/admin/django_q/schedule/",
        {"action": "run_now", "_selected_action": [schedule.pk]},
    )
    again = curator_client.post(
        "/admin/django_q/schedule/",
        {"action": "run_now", "_selected_action": [schedule.pk]},
        follow=True,
    )

    run = IndexRun.objects.get()
    assert run.status == "queued" and run.trigger == "admin"
    assert b"already in progress" in again.content


def test_index_runs_are_read_only_in_the_admin(curator_client, sample_volume):
    run = index_run(IndexRun.Trigger.COMMAND)
    page = curator_client.get(f"/admin/indexing/indexrun/{run.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert curator_client.get("/admin/indexing/indexrun/add/").status_code == 403
