"""GET /status (reference 2.1, the v0.17 shape): what is running, and how it is.

It must answer 200 quickly whatever is down (Helm probes it with a 5 s
timeout), so every block that needs the database is read after one probe
query, and a database fault becomes the error markers the dashboard shows
(`db_status.running` false plus `error`), never an exception. Subsystems
that are not configured report their real "off" state, never invented numbers.
"""

from __future__ import annotations

import logging
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Q

from dlm_bridge import services as dlm_services
from dpd import remembered_counts
from dpd.access import visible_to
from dpd.database_check import database_in_use
from dpd.models import DataProduct
from dpd.sdp_watcher import watcher_block
from dpd.status_rows import StatusRows
from dpd.volume import volume_root
from indexing.status import indexing_block, pv_index_block, pv_index_config

logger = logging.getLogger(__name__)

SDP_DESCRIPTION = "SDP Configuration Database (etcd) for data product flow information"
# Shown while the database cannot say how indexing goes.
_INDEXING_UNKNOWN = {
    "in_progress": False,
    "progress": {
        "files_processed": None,
        "total_files": None,
        "files_added": None,
        "files_updated": None,
        "files_skipped": None,
        "indexing_step": "error",
    },
    "coordination_state": None,
    "stalled": None,
}


def available_data_stores() -> list[str]:
    """The stores rows can come from; each name is a row's metadata_store_name."""
    stores = [settings.PVCNAME]
    if settings.SKA_DATAPRODUCT_DLM_INTERFACE_ENABLED:
        stores.append("DLM")
    if settings.SDP_ETCD_HOST:
        stores.append("SDP")
    return sorted(stores)


def _catalogue_counts(hidden: frozenset[str], version: tuple | None) -> dict[str, Any]:
    """The counts and the last change time.

    /status authenticates nobody (probes and the dashboard poll it), so the
    counts are of the products open to everyone: a hidden product is never
    counted where a caller may see it (dpd/access.py). The update time covers
    every product: any change must reload a signed-in member's grid, and a
    time tells nothing about which product changed.

    The time is an index probe, read on every call with the number of
    removals (dpd.models.CatalogueRemovals): that `version` comes with the
    other blocks' rows (dpd.status_rows). The counts read every row
    (55 ms at 100,000 products), so they are remembered while both hold, for
    at most FRESH_SECONDS, and counted by one thread at a time
    (dpd.remembered_counts): an addition, update or removal shows at once.
    """
    last_update = version[0] if version else None
    # Placeholder rows (SDP work with no product yet) are not products.
    # DLM rows only while they are listed (dlm_bridge.services.hidden_sources).
    open_to_all = visible_to(frozenset()) & ~Q(source__in=[DataProduct.Source.SDP, *hidden])
    counts = remembered_counts.remembered(
        f"dpd:status-counts:{','.join(sorted(hidden))}",
        lambda: DataProduct.objects.aggregate(
            total=Count("pk", filter=open_to_all),
            on_volume=Count("pk", filter=open_to_all & Q(source=DataProduct.Source.VOLUME)),
        ),
        version=version,
    )
    return {**counts, "last_update": last_update}


def _dlm_interface_status() -> dict[str, Any]:
    """The DLM bridge's probes and last sync (issue 19)."""
    return dlm_services.interface_status()


def api_status() -> dict[str, Any]:
    db_error = None
    watched = bool(settings.SDP_ETCD_HOST)
    indexing, pv_indexing, sdp = dict(_INDEXING_UNKNOWN), pv_index_config(), None
    try:
        rows = StatusRows.read(with_watcher=watched)
        counts = _catalogue_counts(dlm_services.hidden_sources(), rows.version)
    except DatabaseError as exc:
        logger.warning("status: database unavailable: %s", exc)
        db_error = f"Database not available: {type(exc).__name__}"
        counts = {"total": None, "on_volume": None, "last_update": None}
    else:
        indexing = indexing_block(rows.state, rows.has_queued)
        pv_indexing = pv_index_block(rows.last_run)
        if watched:
            sdp = watcher_block(rows.watcher)

    metadata_store: dict[str, Any] = {
        "store_type": f"Stateless {_database_name()} metadata store",
        "db_status": {"configured": True, "running": db_error is None},
        # Which database, and which variables chose it (never the password).
        "database": database_in_use(),
        "last_metadata_update_time": (
            counts["last_update"].isoformat() if counts["last_update"] else None
        ),
        "number_of_dataproducts": counts["total"],
        "dlm_interface_enabled": settings.SKA_DATAPRODUCT_DLM_INTERFACE_ENABLED,
        "dlm_interface_status": _dlm_interface_status(),
    }
    search_store: dict[str, Any] = {
        "metadata_search_store_in_use": f"{_database_name()} Search Store"
    }
    if db_error is not None:
        metadata_store["db_status"]["error"] = db_error
        metadata_store["error"] = db_error
        search_store["error"] = db_error

    return {
        "api_running": True,
        "api_version": settings.SKA_DATAPRODUCT_API_VERSION,
        "startup_time": apps.get_app_config("dpd").startup_time.isoformat(),
        "available_data_stores": available_data_stores(),
        "indexing": indexing,
        "pv_interface_status": {
            "metadata_store_name": settings.PVCNAME,
            "pv_available": volume_root().is_dir(),
            "number_of_data_products_on_pv": counts["on_volume"],
            **pv_indexing,
        },
        "metadata_store_status": metadata_store,
        "search_store_status": search_store,
        "sdp_config_db": {
            **(sdp or {"connected": False, "watcher_connected": False}),
            "description": SDP_DESCRIPTION,
        },
    }


def _database_name() -> str:
    return "PostgreSQL" if settings.IS_POSTGRESQL else "SQLite"
