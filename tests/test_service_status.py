"""/status from a running service (`manage.py runservice`, real gunicorn
workers): what it reports about the service is the same whichever worker
answers."""

from __future__ import annotations

import datetime as dt
import os
import signal
from pathlib import Path

import pytest

from tests.service_processes import child_pids, postgres_services, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def service_set(transactional_db, volume, tmp_path):
    with postgres_services(
        volume, tmp_path, INDEXING_ON_STARTUP="false", INDEXING_SCHEDULE_MINUTES="0"
    ) as started:
        yield started


def _gunicorn_master(service, service_set) -> int:
    """The pid of the service's gunicorn master (runservice -> master -> workers)."""
    masters = [pid for pid in child_pids(service.process.pid) if "gunicorn" in _command_line(pid)]
    assert len(masters) == 1, f"gunicorn masters {masters}:\n{service_set.logs()}"
    return masters[0]


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_every_worker_reports_the_start_up_time_of_the_service(service_set):
    before = dt.datetime.now(dt.UTC)
    service = service_set.runservice("pod", workers=2)
    service.wait_ready()
    first = service.get("/status")[1]["startup_time"]

    # Every worker that answered so far is replaced by one started later,
    # which must still report the service's start, not its own.
    master = _gunicorn_master(service, service_set)
    old = set(child_pids(master))
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: len(set(child_pids(master)) - old) == 2 or not service.process.alive(),
        timeout=30,
        what="gunicorn to replace both workers",
    )
    assert service.process.alive(), f"the service stopped:\n{service_set.logs()}"
    replaced_at = dt.datetime.now(dt.UTC)
    answers = {service.wait_ready()["startup_time"] for _ in range(20)}

    # Reference 2.1: the API's start-up time, not each worker process's.
    assert answers == {first}
    assert before <= dt.datetime.fromisoformat(first) <= replaced_at
