"""/readyz, /metrics and the logs from real gunicorn processes (`manage.py
runweb`): a database that is down or lacks its migrations, request metrics
summed over two worker processes, JSON log lines."""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.management import call_command
from prometheus_client.parser import text_string_to_metric_families

from dpd.synthetic import write_synthetic_volume
from tests.service_processes import (
    ThrowawayPostgres,
    free_port,
    postgres_services,
    unavailable,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def services(transactional_db, volume, tmp_path, settings):
    settings.INDEXING_PARALLEL_WORKERS = 1
    with postgres_services(volume, tmp_path, SDP_ETCD_HOST="") as started:
        started.volume = volume
        yield started


def _healthy(service) -> bool:
    assert service.process.alive(), service.process.output()
    return service.get("/healthz")[0] == 200


def _samples(service) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(service.base_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_readyz_is_503_with_json_when_the_database_is_down(services):
    down = f"postgres://nobody@127.0.0.1:{free_port()}/dpd"
    web = services.runweb("web-a", DATABASE_URL=down)
    wait_for(lambda: _healthy(web), timeout=60, what="/healthz to answer")

    status, body, headers = web.get("/readyz", timeout=15)
    assert status == 503
    assert headers["Content-Type"] == "application/json"
    assert body["ready"] is False
    assert body["detail"] == "Not ready: the database is unavailable."
    assert body["checks"]["database"]["ok"] is False
    assert "error" in body["checks"]["database"]


def test_readyz_waits_for_the_migrations(services):
    try:
        server = ThrowawayPostgres()
    except RuntimeError as exc:
        unavailable(str(exc))
    try:
        web = services.runweb("web-a", DATABASE_URL=server.url, DPD_MIGRATE_ON_STARTUP="false")
        wait_for(lambda: _healthy(web), timeout=60, what="/healthz to answer")
        status, body, _ = web.get("/readyz", timeout=15)
        assert status == 503
        assert body["checks"]["database"]["ok"] is True
        assert "dpd.0001_initial" in body["checks"]["migrations"]["unapplied"]

        migrate = services.command("migrate", "migrate", "--no-input", DATABASE_URL=server.url)
        assert migrate.popen.wait(timeout=180) == 0, migrate.output()
        status, body, _ = web.get("/readyz", timeout=15)
        assert (status, body["ready"]) == (200, True)
    finally:
        services.stop_all()
        server.destroy()


def test_metrics_sum_two_gunicorn_workers_after_an_indexing_run(services):
    files = write_synthetic_volume(services.volume, 3)
    call_command("reindex")
    web = services.runweb("web-a", workers=2)
    web.wait_ready()

    key = (
        "dpd_http_requests_total",
        (("method", "GET"), ("route", "^status/?$"), ("status", "200")),
    )
    latency = (
        "dpd_http_request_duration_seconds_count",
        (("method", "GET"), ("route", "^status/?$")),
    )
    before = _samples(web)  # wait_ready's /status requests (scrapes are not counted)
    # Concurrent clients on fresh connections: both workers serve some.
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: web.get("/status", timeout=30)[0], range(40)))
    assert statuses == [200] * 40
    # Every scrape, whichever worker answers it, sums both workers' counts.
    for _ in range(6):
        metrics = _samples(web)
        assert metrics[key] - before[key] == 40
    assert metrics[latency] - before[latency] == 40
    assert metrics[("dpd_index_runs_total", (("status", "completed"),))] == 1
    assert metrics[("dpd_indexing_files_indexed_total", ())] == files
    assert metrics[("dpd_products", (("source", "volume"), ("store", "shared")))] == files
    pids = {
        line.split("pid ")[-1]
        for line in web.process.output().splitlines()
        if "Booting worker" in line
    }
    assert len(pids) == 2


def test_json_logs_give_one_object_per_request(services):
    web = services.runweb("web-a", LOG_FORMAT="json")
    web.wait_ready()
    web.get("/muidatagridconfig")
    wait_for(
        lambda: "muidatagridconfig" in web.process.output(), timeout=10, what="the request line"
    )
    lines = [line for line in web.process.output().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    request = next(r for r in records if r.get("path") == "/muidatagridconfig")
    assert request["logger"] == "dpd.requests"
    assert (request["method"], request["status"]) == ("GET", 200)
    assert request["duration_ms"] >= 0
    # gunicorn's own lines are JSON too.
    assert any(
        r["logger"] == "gunicorn.error" and "Booting worker" in r["message"] for r in records
    )
