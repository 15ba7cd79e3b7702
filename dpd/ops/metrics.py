"""/metrics in the Prometheus text format (prometheus_client).

Two kinds of figures:

- **Per process**: request counts and latencies by route, counted in each web
  process. gunicorn runs several worker processes and a scrape reaches one of
  them, so these use prometheus_client's multiprocess mode: each process
  writes its samples to files in PROMETHEUS_MULTIPROC_DIR, and a scrape sums
  them (dpd/gunicorn_conf.py makes the directory before the workers start
  and marks dead workers' files at child_exit). Without that variable (the
  test client, `runserver`) they live in the process's default registry.
- **From the database**, read at each scrape (`DatabaseCollector`): products
  by store, indexing runs by outcome, files indexed, the last run's duration,
  the django-q2 queue length, SDP flows by status, and DLM reachability
  (dpd.ops.probes). The worker side writes these tables, so every web
  process and pod reports the same values: aggregate them with max(), not
  sum(), across pods.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Count, F, Sum
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter(
    "dpd_http_requests",
    "HTTP requests answered, by method, route (the URL pattern) and status code.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "dpd_http_request_duration_seconds",
    "Time from the request reaching Django to its response, by method and route "
    "(a streamed download counts until its first byte).",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def record_request(method: str, route: str, status: int, seconds: float) -> None:
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(seconds)


def allowed(address: str) -> bool:
    """Whether a connection from `address` may read /metrics (DPD_METRICS_ALLOWED_ADDRESSES)."""
    listed = settings.DPD_METRICS_ALLOWED_ADDRESSES
    if "*" in listed:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(cidr, strict=False) for cidr in listed)


def render() -> tuple[bytes, str]:
    """The whole exposition: the processes' samples, then the database's."""
    if os.environ.get(MULTIPROC_ENV):
        processes = CollectorRegistry()
        MultiProcessCollector(processes)
    else:
        processes = REGISTRY
    database = CollectorRegistry(auto_describe=False)
    database.register(DatabaseCollector())
    return generate_latest(processes) + generate_latest(database), CONTENT_TYPE_LATEST


class DatabaseCollector:
    """Figures read from the catalogue's and the indexer's tables at each scrape."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("dpd_database_up", "1 when the database answered this scrape.")
        try:
            families = list(self._from_database())
        except DatabaseError:
            connection.close()
            up.add_metric([], 0)
            yield up
        else:
            up.add_metric([], 1)
            yield up
            yield from families
        dlm = _dlm_family()
        if dlm is not None:
            yield dlm

    def _from_database(self) -> Iterator[Metric]:
        from django_q.models import OrmQ

        from dpd.models import DataProduct
        from dpd.sdp_models import Flow
        from indexing.models import IndexingState, IndexRun

        products = GaugeMetricFamily(
            "dpd_products",
            "Catalogued products by store (metadata_store_name) and source.",
            labels=["store", "source"],
        )
        rows = DataProduct.objects.values("source").annotate(n=Count("pk")).order_by("source")
        for row in rows:
            store = DataProduct(source=row["source"]).store_name
            products.add_metric([store, row["source"]], row["n"])
        yield products

        runs = CounterMetricFamily(
            "dpd_index_runs",
            "Indexing runs recorded, by outcome (IndexRun.status; skipped: a follower).",
            labels=["status"],
        )
        by_status = dict(
            IndexRun.objects.values_list("status").annotate(n=Count("pk")).order_by("status")
        )
        for status in IndexRun.Status.values:
            runs.add_metric([status], by_status.get(status, 0))
        yield runs

        files = IndexRun.objects.aggregate(n=Sum(F("files_added") + F("files_updated")))["n"]
        indexed = CounterMetricFamily(
            "dpd_indexing_files_indexed",
            "Metadata files added or updated by all recorded runs.",
        )
        indexed.add_metric([], files or 0)
        yield indexed

        last = (
            IndexRun.objects.exclude(status__in=[*IndexRun.ACTIVE, IndexRun.Status.SKIPPED])
            .exclude(duration=None)
            .order_by("-terminal_timestamp")
            .first()
        )
        duration = GaugeMetricFamily(
            "dpd_indexing_last_run_duration_seconds",
            "Duration of the last run that scanned (any outcome but skipped).",
        )
        ended = GaugeMetricFamily(
            "dpd_indexing_last_success_timestamp_seconds",
            "When the last completed run ended (Unix time); absent before the first.",
        )
        if last is not None:
            duration.add_metric([], last.duration.total_seconds())
        yield duration
        success = (
            IndexRun.objects.filter(status=IndexRun.Status.COMPLETED)
            .order_by("-terminal_timestamp")
            .values_list("terminal_timestamp", flat=True)
            .first()
        )
        if success is not None:
            ended.add_metric([], success.timestamp())
        yield ended

        running = GaugeMetricFamily(
            "dpd_indexing_running", "1 while a run holds the volume's indexing slot."
        )
        from indexing.leader import volume_prefix

        state = IndexingState.objects.filter(volume_prefix=volume_prefix()).first()
        running.add_metric([], int(bool(state and state.indexing_running)))
        yield running

        queue = GaugeMetricFamily(
            "dpd_task_queue_length", "django-q2 tasks waiting in the queue (ORM broker)."
        )
        queue.add_metric([], OrmQ.objects.count())
        yield queue

        flows = GaugeMetricFamily(
            "dpd_sdp_flows", "SDP flows mirrored from etcd, by status.", labels=["status"]
        )
        for status, n in Flow.objects.values_list("status").annotate(n=Count("pk")).order_by():
            flows.add_metric([status or "none"], n)
        yield flows


def _dlm_family() -> Metric | None:
    from dpd.ops.probes import dlm_reachable

    reachable = dlm_reachable()
    if reachable is None:
        return None
    family = GaugeMetricFamily("dpd_dlm_reachable", "1 when the DLM tables answered a probe.")
    family.add_metric([], int(reachable))
    return family
