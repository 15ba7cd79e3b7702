"""The web side and the worker side as separate processes (Kubernetes: web
pods running `manage.py runweb`, a worker pod running `manage.py runworker`),
on PostgreSQL: start-up indexing and the schedules need no other command, and
several workers on one database index the volume once."""

from __future__ import annotations

import pytest
from django_q.models import OrmQ, Schedule

from dpd.models import DataProduct
from dpd.synthetic import write_synthetic_volume
from indexing.models import IndexRun
from tests.service_processes import postgres_services, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def services(transactional_db, volume, tmp_path):
    with postgres_services(
        volume,
        tmp_path,
        INDEXING_BATCH_SIZE="5",
        INDEXING_PARALLEL_WORKERS="1",
        SDP_ETCD_HOST="",
        Q_WORKERS="1",
    ) as started:
        yield started


def _runs_settled() -> bool:
    """Every queued task taken and no run left open."""
    open_runs = IndexRun.objects.filter(status__in=["queued", "running"]).exists()
    return not OrmQ.objects.exists() and not open_runs


def test_a_web_side_and_a_worker_side_apart_index_the_volume_at_start(services, volume):
    expected = write_synthetic_volume(volume, 8)
    assert DataProduct.objects.count() == 0 and not Schedule.objects.exists()

    web = services.runweb("web-a", workers=1)
    worker = services.runworker("worker-a")
    web.wait_ready()

    wait_for(
        lambda: IndexRun.objects.filter(status="completed").exists(),
        timeout=120,
        what="the worker side's start-up run to complete",
    )
    assert DataProduct.objects.count() == expected
    _, body, _ = web.get("/status")
    open_to_all = DataProduct.objects.filter(access_group__isnull=True).count()
    assert body["metadata_store_status"]["number_of_dataproducts"] == open_to_all > 0
    run = IndexRun.objects.get(status="completed")
    assert (run.trigger, run.indexed_by) == ("startup", "worker-a")
    assert Schedule.objects.filter(name="indexing: periodic re-index").exists()
    assert "start-up indexing queued" in worker.output()
    assert "start-up indexing queued" not in web.process.output()


def test_the_web_side_alone_never_indexes(services, volume):
    write_synthetic_volume(volume, 2)
    web = services.runweb("web-a", workers=1)
    web.wait_ready()
    status, body, _ = web.get("/status")

    assert status == 200
    assert body["metadata_store_status"]["number_of_dataproducts"] == 0
    assert not IndexRun.objects.exists() and not OrmQ.objects.exists()


def test_two_workers_on_one_database_index_the_volume_once(services, volume):
    expected = write_synthetic_volume(volume, 12)
    # Slow batches: the second worker starts while the first one's run goes on.
    slow = {"INDEXING_TEST_BATCH_DELAY_SECONDS": "0.3"}
    services.runworker("worker-a", **slow)
    services.runworker("worker-b", **slow)

    wait_for(
        lambda: IndexRun.objects.filter(trigger="startup").count() == 2 and _runs_settled(),
        timeout=180,
        what="both workers' start-up runs to end",
    )
    completed = IndexRun.objects.filter(status="completed")
    assert completed.count() == 1
    leader = completed.get().indexed_by
    follower = IndexRun.objects.exclude(pk=completed.get().pk).get()
    assert follower.status == "skipped" and leader in follower.failure_message
    assert DataProduct.objects.count() == expected
