"""/healthz, /readyz and /metrics as Kubernetes and Prometheus reach them: by
the pod's address, over plain HTTP; and the per-request and per-batch log lines."""

from __future__ import annotations

import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dpd.models import DataProduct
from dpd.ops import probes
from dpd.synthetic import write_synthetic_volume
from indexing.models import IndexRun
from indexing.services import index_run

POD = {"HTTP_HOST": "10.1.2.3:8000"}  # what a kubelet probe sends: not in ALLOWED_HOSTS


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def dlm_probe():
    yield probes.set_dlm_probe
    probes.set_dlm_probe(None)


def wsgi_get(path: str, method: str = "GET", **environ: str) -> tuple[str, dict, bytes]:
    """One request through the project's WSGI application, as gunicorn makes it."""
    from wsgiref.util import setup_testing_defaults

    from dpd.wsgi import application

    environ = {"PATH_INFO": path, "REQUEST_METHOD": method, **environ}
    setup_testing_defaults(environ)
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer.update(status=status, headers=dict(headers))

    body = b"".join(application(environ, start_response))
    return answer["status"], answer["headers"], body


def test_healthz_answers_without_the_database(settings):
    # No django_db mark: any database access would raise here.
    settings.SECURE_SSL_REDIRECT = True  # a plain-HTTP probe is not redirected
    status, headers, body = wsgi_get("/healthz", HTTP_HOST="10.1.2.3:8000")
    assert status == "200 OK"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"status": "ok"}
    assert int(headers["Content-Length"]) == len(body)


def test_healthz_answers_head_without_a_body_and_only_on_its_own_path():
    from dpd.wsgi import answer_health

    status, headers, body = wsgi_get("/healthz", "HEAD")
    assert (status, body) == ("200 OK", b"")
    assert int(headers["Content-Length"]) > 0
    # Any other path is Django's (a product page called healthz-something).
    passed = []
    inner = answer_health(lambda environ, start_response: passed.append(environ["PATH_INFO"]))
    for path in ("/healthzz", "/healthz/", "/api/healthz"):
        inner({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, None)
    assert passed == ["/healthzz", "/healthz/", "/api/healthz"]


@pytest.mark.django_db
def test_readyz_is_ready_with_the_database_and_its_migrations(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    response = client.get("/readyz", **POD)
    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True
    assert body["checks"]["database"] == {"ok": True, "required": True}
    assert body["checks"]["migrations"] == {"ok": True, "required": True}
    # Reported, not required.
    assert body["checks"]["etcd"]["required"] is False
    assert body["checks"]["dlm"]["required"] is False


@pytest.mark.django_db
def test_readyz_reports_an_unreachable_dlm_without_failing(client, settings, dlm_probe):
    settings.SKA_DATAPRODUCT_DLM_INTERFACE_ENABLED = True
    dlm_probe(lambda: (False, "permission denied for schema dlm"))
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["dlm"] == {
        "configured": True,
        "reachable": False,
        "required": False,
        "error": "permission denied for schema dlm",
    }
    metrics = samples(client.get("/metrics").content.decode())
    assert metrics[("dpd_dlm_reachable", ())] == 0


@pytest.mark.django_db
def test_the_dlm_gauge_is_absent_until_a_probe_is_registered(client, settings):
    settings.SKA_DATAPRODUCT_DLM_INTERFACE_ENABLED = True
    assert "dpd_dlm_reachable" not in client.get("/metrics").content.decode()
    assert client.get("/readyz").json()["checks"]["dlm"]["reachable"] is None


@pytest.mark.django_db
def test_metrics_are_refused_to_addresses_not_listed(client, settings):
    response = client.get("/metrics", REMOTE_ADDR="10.9.8.7", **POD)
    assert response.status_code == 403
    assert "DPD_METRICS_ALLOWED_ADDRESSES" in response.json()["detail"]

    settings.DPD_METRICS_ALLOWED_ADDRESSES = ["10.0.0.0/8"]
    response = client.get("/metrics", REMOTE_ADDR="10.9.8.7", **POD)
    assert response.status_code == 200
    # The same pod network holds the ingress: what it forwards is refused.
    forwarded = {"REMOTE_ADDR": "10.9.8.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}
    assert client.get("/metrics", **forwarded, **POD).status_code == 403
    assert response["Content-Type"].startswith("text/plain; version=")


@pytest.mark.django_db
def test_metrics_count_requests_by_route_and_read_indexing_from_the_database(
    client, settings, tmp_path
):
    settings.PERSISTENT_STORAGE_PATH = str(tmp_path)
    settings.INDEXING_PARALLEL_WORKERS = 1
    files = write_synthetic_volume(tmp_path, 3)
    index_run(IndexRun.Trigger.COMMAND)
    before = samples(client.get("/metrics").content.decode())
    for _ in range(3):
        client.get("/status")
    after = samples(client.get("/metrics").content.decode())

    key = (
        "dpd_http_requests_total",
        (("method", "GET"), ("route", "^status/?$"), ("status", "200")),
    )
    assert after[key] - before.get(key, 0) == 3
    assert after[("dpd_index_runs_total", (("status", "completed"),))] == 1
    assert after[("dpd_indexing_files_indexed_total", ())] == files
    assert after[("dpd_products", (("source", "volume"), ("store", "shared")))] == files
    assert after[("dpd_indexing_last_run_duration_seconds", ())] > 0
    assert after[("dpd_task_queue_length", ())] == 0
    assert after[("dpd_database_up", ())] == 1


@pytest.mark.django_db
def test_one_log_line_per_request_and_per_indexing_batch(client, settings, tmp_path, caplog):
    settings.PERSISTENT_STORAGE_PATH = str(tmp_path)
    settings.INDEXING_PARALLEL_WORKERS = 1
    settings.INDEXING_BATCH_SIZE = 2
    files = write_synthetic_volume(tmp_path, 3)
    with caplog.at_level(logging.INFO):
        client.get("/status?x=1")
        run = index_run(IndexRun.Trigger.COMMAND)

    requests = [r for r in caplog.records if r.name == "dpd.requests"]
    assert len(requests) == 1
    assert '"GET /status?x=1" 200' in requests[0].getMessage()
    assert (requests[0].route, requests[0].status) == ("^status/?$", 200)
    batches = [r for r in caplog.records if getattr(r, "run_id", None) == run.pk]
    assert len(batches) >= files // 2
    assert batches[-1].files_processed == files


def test_json_log_lines_carry_the_fields(settings):
    from django.utils.module_loading import import_string

    spec = dict(settings.LOG_FORMATTERS["json"])
    formatter = import_string(spec.pop("()"))(**spec)
    record = logging.makeLogRecord(
        {"name": "dpd.requests", "msg": "GET /status", "levelname": "INFO", "route": "status"}
    )
    assert json.loads(formatter.format(record)) | {"time": None} == {
        "time": None,
        "level": "INFO",
        "logger": "dpd.requests",
        "message": "GET /status",
        "route": "status",
    }


@pytest.mark.django_db
def test_products_are_counted_under_the_store_name_the_api_gives_them(client, settings, tmp_path):
    settings.PERSISTENT_STORAGE_PATH = str(tmp_path)
    settings.INDEXING_PARALLEL_WORKERS = 1
    files = write_synthetic_volume(tmp_path, 3)
    index_run(IndexRun.Trigger.COMMAND)
    mirrored = DataProduct.objects.order_by("pk").first()
    DataProduct.objects.filter(pk=mirrored.pk).update(source=DataProduct.Source.DLM)

    metrics = samples(client.get("/metrics").content.decode())

    assert metrics[("dpd_products", (("source", "dlm"), ("store", "DLM")))] == 1
    assert metrics[("dpd_products", (("source", "volume"), ("store", "shared")))] == files - 1
