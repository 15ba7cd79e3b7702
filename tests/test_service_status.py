"""/status from a running service (`manage.py runservice`, real gunicorn
workers): what it reports about the service is the same whichever worker
answers."""

from __future__ import annotations

import datetime as dt
import json
import socket
from urllib.parse import urlsplit

import pytest
from django.db import connection

from tests.service_processes import read_answer, running_services, unavailable

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def service_set(transactional_db, tmp_path):
    if connection.vendor != "postgresql":
        unavailable("a running service needs PostgreSQL (DATABASE_URL)")
    volume = tmp_path / "volume"
    volume.mkdir()
    with running_services(
        volume, tmp_path, INDEXING_ON_STARTUP="false", INDEXING_SCHEDULE_MINUTES="0"
    ) as started:
        yield started


def _status_held_by_one_worker_while_another_answers(service) -> tuple[dict, dict]:
    """(/status from one worker, /status from another): a sync worker that
    has accepted a request whose headers are unfinished waits for them, so
    the request sent meanwhile goes to another worker."""
    address = urlsplit(service.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as held:
        held.sendall(b"GET /status HTTP/1.1\r\nHost: localhost\r\n")
        status, other, _ = service.get("/status")
        assert status == 200
        held.sendall(b"Connection: close\r\n\r\n")
        answered, _, body = read_answer(held)
    assert answered == 200, body
    return json.loads(body), other


def test_every_worker_reports_the_start_up_time_of_the_service(service_set):
    before = dt.datetime.now(dt.UTC)
    service = service_set.runservice("pod", workers=2)
    service.wait_ready()

    one, other = _status_held_by_one_worker_while_another_answers(service)

    # Reference 2.1: the API's start-up time, not each worker process's.
    assert one["startup_time"] == other["startup_time"]
    assert before <= dt.datetime.fromisoformat(one["startup_time"]) <= dt.datetime.now(dt.UTC)
