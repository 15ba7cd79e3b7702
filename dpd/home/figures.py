"""The home page's figures: a handful of aggregate queries, each scoped to
what the caller may see.

Every count goes through `dpd.access.visible_products(request)`, the
queryset search and the product pages use, so a product of an access group
the caller is not in is never counted, charted or linked (docs/security.md).
The API, database and indexing state come from `dpd.status.api_status()`:
the page says exactly what `/status` says.

The breakdown by instrument and type reads two keys of every visible
document: at 100,000 products that is seconds, not milliseconds
(bench/bench_home.py), since each document is read from TOAST. So the
catalogue's figures are kept in Django's cache per visibility scope, with
a version that changes whenever the catalogue does: the last product write
(`/status`'s last_metadata_update_time, which every insert and update
moves) and the newest run's id and status (a run that removed vanished
files ends, and its status moves). CATALOGUE_CACHE_SECONDS bounds what
no run and no write announces (a product deleted through the admin).
While a run writes, figures up to SETTLING_SECONDS old are shown whatever
changed (catalogue_figures).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import TruncMonth
from django.http import HttpRequest

from annotations.models import Annotation
from dpd.access import visible_products
from dpd.models import DLM_SOURCES, DLM_STORE_NAME, SDP_STORE_NAME, DataProduct
from dpd.permissions import REINDEX_PERMISSION, may_manage
from dpd.sdp_models import Flow
from indexing.models import IndexRun

RECENT_RUNS = 5
RECENT_ANNOTATIONS = 5
NEWEST_PRODUCTS = 8
TABLE_ROWS = 10  # per breakdown table, the last one summing the rest
CATALOGUE_CACHE_SECONDS = 600
# While a run writes, how old the figures may be (catalogue_figures).
SETTLING_SECONDS = 10
# How a catalogued product came into the volume's store.
STORE_SOURCES = {DataProduct.Source.VOLUME: "volume", DataProduct.Source.API: "API ingest"}
# Text in the tables for a product whose metadata does not say.
NOT_GIVEN = "(not given)"


@dataclass
class Tally:
    """Counts by one key, largest first."""

    rows: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, count: int) -> None:
        self.rows[key] = self.rows.get(key, 0) + count

    def largest_first(self, limit: int | None = None) -> list[tuple[str, int]]:
        """The rows, largest first; past `limit`, the rest summed in one row
        (metadata is free-form: a volume may name a thousand instruments)."""
        rows = sorted(self.rows.items(), key=lambda item: (-item[1], item[0]))
        if limit is None or len(rows) <= limit:
            return rows
        rest = rows[limit - 1 :]
        return [*rows[: limit - 1], (f"{len(rest)} others", sum(count for _, count in rest))]


def catalogue_breakdown(products: QuerySet[DataProduct]) -> dict[str, Any]:
    """Products by store, instrument and product type, and DLM copies by
    location, in one GROUP BY.

    The combinations of (source, instrument, type, location) are few (a
    handful of instruments, types and DLM locations), so the tallies are
    summed here rather than asked for in several scans of the catalogue.
    """
    rows = (
        products.order_by()
        .values(
            "source",
            instrument=KT("metadata__obscore__instrument_name"),
            product_type=KT("metadata__obscore__dataproduct_type"),
            # Where a DLM copy's storage is (dlm_bridge.sync puts it in the document).
            location=KT("metadata__location_name"),
        )
        .annotate(count=Count("pk"))
    )
    stores, instruments, types, locations = Tally(), Tally(), Tally(), Tally()
    total = placeholders = dlm_copies = 0
    for row in rows:
        count = row["count"]
        if row["source"] == DataProduct.Source.SDP:
            # SDP work with no product yet: shown by store, never counted as a product.
            placeholders += count
            stores.add(f"{SDP_STORE_NAME} (placeholders)", count)
            continue
        if row["source"] in DLM_SOURCES:
            # Copies the DLM holds, of products counted where they were made.
            dlm_copies += count
            stores.add(f"{DLM_STORE_NAME} (copies)", count)
            locations.add(row["location"] or NOT_GIVEN, count)
            continue
        total += count
        how = STORE_SOURCES.get(row["source"], row["source"])
        stores.add(f"{settings.PVCNAME} ({how})", count)
        instruments.add(row["instrument"] or NOT_GIVEN, count)
        types.add(row["product_type"] or NOT_GIVEN, count)
    return {
        "total": total,
        "placeholders": placeholders,
        "dlm_copies": dlm_copies,
        "by_store": stores.largest_first(),
        "by_instrument": instruments.largest_first(TABLE_ROWS),
        "by_type": types.largest_first(TABLE_ROWS),
        "dlm_by_location": locations.largest_first(TABLE_ROWS),
    }


def products_per_month(products: QuerySet[DataProduct]) -> list[tuple[dt.date, int]]:
    """(first day of the month, products created that month), oldest first;
    neither placeholders nor DLM copies, which are not new products."""
    rows = (
        products.exclude(source__in=[DataProduct.Source.SDP, *DLM_SOURCES])
        .order_by()
        .annotate(month=TruncMonth("date_created"))
        .values("month")
        .annotate(count=Count("pk"))
        .order_by("month")
    )
    return [(_as_date(row["month"]), row["count"]) for row in rows]


def _as_date(value: dt.date | dt.datetime) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


def flows_by_status(products: QuerySet[DataProduct]) -> list[tuple[str, int]]:
    """SDP flows of the execution blocks the caller may see, by state: a
    flow is part of its product (docs/security.md), never counted apart."""
    rows = (
        Flow.objects.filter(execution_block__in=products.values("execution_block"))
        .order_by()
        .values("status")
        .annotate(count=Count("pk"))
    )
    tally = Tally()
    for row in rows:
        tally.add(row["status"] or "unknown", row["count"])
    return tally.largest_first()


def duration_text(duration: dt.timedelta | None) -> str:
    """A run's length as a person reads it: "0.8 s", "4 min 12 s", "2 h 05 min"."""
    if duration is None:
        return "—"
    seconds = duration.total_seconds()
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def recent_runs(request: HttpRequest) -> dict[str, Any]:
    """The last runs; their errors name files (of hidden products too), so
    only callers who may read the run history (docs/security.md) see them."""
    runs = list(IndexRun.objects.newest_first().defer("log")[:RECENT_RUNS])
    for run in runs:
        run.duration_text = duration_text(run.duration)
    detailed = settings.DPD_COMPAT_OPEN_MANAGEMENT or may_manage(request.user, REINDEX_PERMISSION)
    return {"runs": runs, "show_errors": detailed}


def recent_annotations(products: QuerySet[DataProduct]) -> list[Annotation]:
    """The last annotations on products the caller may see, each with its product."""
    annotations = list(
        Annotation.objects.on_products(products).order_by("-timestamp_modified", "-annotation_id")[
            :RECENT_ANNOTATIONS
        ]
    )
    uids = {annotation.data_product_uid for annotation in annotations}
    by_uid = {
        product.uid: product
        for product in products.filter(uid__in=uids).only("uid", "execution_block")
    }
    for annotation in annotations:
        annotation.product = by_uid.get(annotation.data_product_uid)
    return annotations


def newest_products(products: QuerySet[DataProduct]) -> list[DataProduct]:
    """The first products of the grid's order: a newcomer's way in to a product page."""
    return list(
        products.exclude(source=DataProduct.Source.SDP)
        .in_display_order()
        .annotate(
            instrument=KT("metadata__obscore__instrument_name"),
            product_type=KT("metadata__obscore__dataproduct_type"),
        )
        .only("uid", "execution_block", "date_created", "access_group")[:NEWEST_PRODUCTS]
    )


def catalogue_figures(
    products: QuerySet[DataProduct], version: str, *, settling: bool = False
) -> dict[str, Any]:
    """The breakdown and the per-month series, from the cache while `version`
    (the catalogue's last change) holds, and while `settling` (a run is
    writing) for up to SETTLING_SECONDS whatever changed.

    A run moves the version at every batch, and the page reloads itself
    while one goes: each reload recounted every visible document (~1.3 s
    at 100,000 products, bench/bench_home.py). The progress bar is live
    either way; the tables and the chart follow the run every
    SETTLING_SECONDS, and the first render after it ends (its status is
    in the version) counts the final catalogue.

    The visibility scope in the key is the visible products' query itself
    (its groups, its placeholder rule): callers who see the same products
    share an entry, and no two scopes can, with no query to find out.
    """
    # With its parameters apart: str(query) would write the groups ["a", "b"]
    # and the one group "a, b" alike.
    scope = repr(products.query.sql_with_params())
    key = "dpd-home:" + sha256(scope.encode()).hexdigest()
    entry = cache.get(key)
    if entry is not None and (
        entry["version"] == version or (settling and time.time() - entry["at"] < SETTLING_SECONDS)
    ):
        return entry["figures"]
    figures = {
        "catalogue": catalogue_breakdown(products),
        "per_month": products_per_month(products),
    }
    cache.set(
        key,
        {"figures": figures, "version": version, "at": time.time()},
        CATALOGUE_CACHE_SECONDS,
    )
    return figures


def home_figures(
    request: HttpRequest, last_update: str | None, hidden_sources: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Everything the page shows of the catalogue, for this caller;
    `last_update` is /status's last_metadata_update_time; `hidden_sources`
    the rows no listing shows now (dlm_bridge.services.hidden_sources: the
    DLM's while it does not answer, its deleted and expired items)."""
    products = visible_products(request, hidden_sources=hidden_sources)
    runs = recent_runs(request)
    newest_run = runs["runs"][0] if runs["runs"] else None
    version = f"{last_update}|{newest_run.pk if newest_run else 0}|"
    version += newest_run.status if newest_run else ""
    settling = newest_run is not None and newest_run.status == IndexRun.Status.RUNNING
    return {
        **catalogue_figures(products, version, settling=settling),
        "flows": flows_by_status(products),
        "annotations": recent_annotations(products),
        "newest": newest_products(products),
        **runs,
    }
