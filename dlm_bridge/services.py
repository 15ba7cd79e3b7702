"""What the rest of the project calls: the DLM bridge's public functions.

dpd's interface (its API views, /status, runservice) calls these; dpd's
catalogue modules never import this app (dpd/__init__.py), they take what
these return as arguments.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.db.models import QuerySet

from dlm_bridge import probe as probes
from dlm_bridge.models import DataItem, SyncState
from dpd.models import DataProduct

# The grid field (and search key) that asks for deleted and expired items.
STATE_FIELD = "item_state"
_ALL_DLM = frozenset({DataProduct.Source.DLM.value, DataProduct.Source.DLM_RETIRED.value})
_RETIRED = frozenset({DataProduct.Source.DLM_RETIRED.value})


def hidden_sources(*, include_retired: bool = False) -> frozenset[str]:
    """Catalogue sources a listing or lookup must leave out now: every DLM
    row while the DLM is unreachable or unreadable (the DLM part of the
    answer is then empty, /status says why); otherwise the deleted and
    expired items unless `include_retired`.

    With the interface off, nothing: there are no DLM rows to hide (a service
    start with it off removes them, dlm_bridge.tasks, and so does a sync), and
    searches keep the very queries and plans they have without a DLM (an
    extra condition on `source` moved the window's walk off its index).
    """
    probe = probes.current()
    if not probe.enabled:
        return frozenset()
    if not probe.serves_items:
        return _ALL_DLM
    return frozenset() if include_retired else _RETIRED


def lists_copies(hidden: frozenset[str]) -> bool:
    """Whether a product's page lists where the DLM holds copies: the
    interface is on and its rows are not `hidden`. With it off there are no
    DLM rows (see hidden_sources), and /dataproductmetadata skips the query
    for them (in-process at 100,000 products: 2.76 -> 1.98 ms a request)."""
    return probes.current().enabled and DataProduct.Source.DLM not in hidden


def filter_asks_for_retired(items: Iterable[Any]) -> bool:
    """A grid or search-panel item on item_state lists deleted and expired items too."""
    return any(isinstance(item, dict) and item.get("field") == STATE_FIELD for item in items)


def pairs_ask_for_retired(pairs: Iterable[tuple[str, str]]) -> bool:
    """A /dataproductsearch pair whose key is item_state does the same."""
    return any(key == STATE_FIELD for key, _ in pairs)


def items() -> QuerySet[DataItem]:
    """The DLM's items that carry metadata, with storage and location when
    this instance may read them (evaluating it reads the DLM database)."""
    found = DataItem.objects.filter(metadata__isnull=False)
    if probes.current().tables_readable:
        found = found.select_related("storage__location")
    return found


def download_refusal(products: Iterable[DataProduct], asked: str) -> str | None:
    """The 404 message for a download whose every product is a DLM copy
    (reference 2.9 [rec]: nothing to send from the volume), else None."""
    products = list(products)
    if not products or any(p.source not in _ALL_DLM for p in products):
        return None
    documents = DataProduct.objects.filter(pk__in=[p.pk for p in products])
    where = sorted(
        {
            f"{document.get('storage_name') or 'unknown storage'}"
            f" ({document.get('location_name') or 'unknown location'})"
            for document in documents.values_list("metadata", flat=True)
        }
    )
    return (
        f"File not found: {asked} is held by the Data Lifecycle Manager, not on this "
        f"service's volume (stored on {', '.join(where)}); ask the DLM for a copy."
    )


_counted: tuple[float, int] | None = None


def _item_count() -> int:
    """The DLM's data_item rows, counted at most once per DLM_PROBE_SECONDS
    (the dashboard polls /status every few seconds; a count reads every row)."""
    global _counted
    now = time.monotonic()
    if _counted is None or now - _counted[0] >= settings.DLM_PROBE_SECONDS:
        _counted = (now, DataItem.objects.count())
    return _counted[1]


def interface_status() -> dict[str, Any]:
    """/status `metadata_store_status.dlm_interface_status`: the probe's
    answer, the number of the DLM's items, and how the last sync went."""
    probe = probes.current()
    if not probe.enabled:  # the upstream's off state, exactly
        return {
            "number_of_items": None,
            "dlm_data_item_accessible": False,
            "dlm_tables_accessible": False,
            "dlm_tables_error": None,
        }
    status: dict[str, Any] = {
        "number_of_items": None,
        "dlm_data_item_accessible": probe.serves_items,
        "dlm_tables_accessible": probe.serves_items and probe.tables_readable,
        "dlm_tables_error": probe.error,
        "dlm_database_reachable": probe.reachable,
    }
    if probe.serves_items:
        try:
            status["number_of_items"] = _item_count()
        except DatabaseError as exc:
            probes.forget()
            status["dlm_tables_error"] = f"DLM database unreachable: {type(exc).__name__}"
    try:
        state = SyncState.objects.filter(pk=1).first()
    except DatabaseError:
        state = None
    status["last_sync"] = (
        None
        if state is None
        else {
            "finished_at": state.finished_at.isoformat() if state.finished_at else None,
            "succeeded_at": state.succeeded_at.isoformat() if state.succeeded_at else None,
            "items_listed": state.items,
            "error": state.error or None,
        }
    )
    return status
