"""Helpers of the SDP flow tests: products to enrich, one watcher pass."""

from __future__ import annotations

from dpd.models import DataProduct
from dpd.sdp_watcher import FlowWatcher
from dpd.services import product_ingest_metadata

# The execution blocks of the SDP sample (reference dlm-sdp.md 2.8).
EB1, EB2, EB3 = "eb-m001-20260115-00003", "eb-m002-20260116-00001", "eb-m003-20260117-00001"


def ingest(eb: str, access_group: str | None = None) -> DataProduct:
    """A product of execution block `eb` (REST-ingested metadata, no files)."""
    context = {"observer": "AIV_person_1"}
    if access_group is not None:
        context["access_group"] = access_group
    return product_ingest_metadata(
        {
            "interface": "http://schema.skao.int/ska-data-product-meta/0.1",
            "execution_block": eb,
            "context": context,
        }
    )


def watch_once() -> None:
    """A snapshot written; the state recorded stays as a running writer's."""
    watcher = FlowWatcher(holder="test")
    assert watcher.claim()
    watcher.connect()
    watcher.disconnect()
