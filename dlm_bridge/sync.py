"""The DLM's items with metadata, mirrored into the catalogue (read-only).

Why a mirror: search, the grid's filters, sorting and paging are each one
SQL query over the catalogue's table (dpd.search, dpd.search_rows), with the
indexes that make them fast. Rows in a second database could only be merged
page by page, wrongly as soon as they sort between volume products. So each
DLM copy (one `data_item` uid with metadata) becomes a catalogue row of source
`dlm` (`dlm_retired` when deleted or expired: hidden unless asked for), with
the storage and location of the copy in its document, and every search shape
works on it unchanged, at the same number of queries.

Incremental by fingerprint, not by time: no DLM column stamps a change
(item_state, the deleted flag, a storage's location change without one), so
one statement reads each item's uid and a 64-bit hash of every column we
show, and only the rows whose hash differs from the one stored with the
mirror row (`file_mtime_ns`, the catalogue's change-detection column) are
read in full and written. Items that are gone (or lost their metadata) are
removed after a complete read. The DLM's tables are never written.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from django.db import connection as main_connection
from django.db import connections, transaction
from django.utils import timezone

from dlm_bridge import probe as probes
from dlm_bridge.models import DataItem, Location, Storage, SyncState
from dlm_bridge.router import DLM_ALIAS
from dpd.metadata import (
    FALLBACK_DATE,
    MetadataError,
    date_from_execution_block,
    validate_document,
)
from dpd.models import DataProduct

logger = logging.getLogger(__name__)

DLM_SOURCES = (DataProduct.Source.DLM, DataProduct.Source.DLM_RETIRED)
RETIRED_STATES = frozenset({"DELETED", "EXPIRED"})
# What each row shows of its copy (reference dlm-sdp.md 1.5), after its metadata.
STORAGE_FIELDS = ("storage_name", "storage_type", "storage_interface")
LOCATION_FIELDS = (
    "location_name",
    "location_type",
    "location_country",
    "location_city",
    "location_facility",
)
ENRICHMENT_FIELDS = (*STORAGE_FIELDS, *LOCATION_FIELDS)
# The row fields the catalogue derives (dpd.metadata._derive drops them too).
DERIVED_KEYS = ("date_created", "dataproduct_file", "metadata_file", "uid")
# Read and written in batches of this many rows.
BATCH = 1000
# Only one sync at a time across instances (a session advisory lock).
_LOCK_KEY = 0x0D1_5E7C


@dataclasses.dataclass
class SyncResult:
    items: int = 0
    written: int = 0
    removed: int = 0
    skipped: int = 0
    error: str = ""
    ran: bool = True


def sync_items() -> SyncResult:
    """Make the catalogue's DLM rows what the DLM holds now; records the run."""
    state, _ = SyncState.objects.get_or_create(pk=1)
    state.started_at = timezone.now()
    probe = probes.current(max_age=0)
    result = SyncResult()
    if not probe.enabled or (probe.reachable and not probe.items_readable):
        # Off, or no SELECT on data_item: the DLM is not shown, so nothing is kept.
        result.removed, _ = DataProduct.objects.filter(source__in=DLM_SOURCES).delete()
        result.error = probe.error or ""
    elif not probe.reachable:
        # Kept (hidden while the probe fails) so that a short outage costs no re-sync.
        result.error = probe.error or "DLM database unreachable"
        result.ran = False
    elif not _lock():
        result.error = "another instance is syncing"
        result.ran = False
    else:
        try:
            _sync(probe.tables_readable, result)
        except Exception as exc:  # recorded for /status; the next run starts afresh
            probes.forget()
            logger.exception("DLM sync failed")
            result.error = f"{type(exc).__name__}: {exc}"
        finally:
            _unlock()
    state.finished_at = timezone.now()
    if result.ran and not result.error:
        state.succeeded_at = state.finished_at
    state.items = DataProduct.objects.filter(source__in=DLM_SOURCES).count()
    state.written, state.removed, state.skipped = result.written, result.removed, result.skipped
    state.error = result.error
    state.save()
    result.items = state.items
    return result


def _lock() -> bool:
    if main_connection.vendor != "postgresql":
        return True
    with main_connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [_LOCK_KEY])
        return bool(cursor.fetchone()[0])


def _unlock() -> None:
    if main_connection.vendor == "postgresql":
        with main_connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [_LOCK_KEY])


def _sync(enriched: bool, result: SyncResult) -> None:
    current = dict(_fingerprints(enriched))
    stored = dict(
        DataProduct.objects.filter(source__in=DLM_SOURCES).values_list("uid", "file_mtime_ns")
    )
    changed = [uid for uid, print_ in current.items() if stored.get(uid) != print_]
    for batch in _batches(changed):
        items = DataItem.objects.filter(uid__in=batch)
        if enriched:
            items = items.select_related("storage__location")
        rows = []
        for item in items:
            row = mirror_row(item, enriched=enriched, fingerprint=current[item.uid])
            if row is None:
                result.skipped += 1
            else:
                rows.append(row)
        result.written += _write(rows)
    gone = [uid for uid in stored if uid not in current]
    for batch in _batches(gone):
        removed, _ = DataProduct.objects.filter(source__in=DLM_SOURCES, uid__in=batch).delete()
        result.removed += removed


def _fingerprints(enriched: bool) -> Iterator[tuple[Any, int]]:
    """(uid, hash of what its row shows) of every DLM item with metadata:
    one statement, streamed (a server-side cursor)."""
    items, storages, locations = (m._meta.db_table for m in (DataItem, Storage, Location))
    shown = [
        "d.oid",
        "d.item_state",
        "d.deleted",
        "d.expired",
        "d.uid_creation",
        "d.metadata",
    ]
    joins = ""
    if enriched:
        shown += [f"s.{name}" for name in STORAGE_FIELDS]
        shown += [f"l.{name}" for name in LOCATION_FIELDS]
        joins = (
            f" LEFT JOIN {storages} s ON s.storage_id = d.storage_id"
            f" LEFT JOIN {locations} l ON l.location_id = s.location_id"
        )
    # Each value as text, NULL kept apart from '' (format's %L); the mode too,
    # so that gaining or losing enrichment rewrites every row.
    text = " || '|' || ".join(f"quote_nullable({column}::text)" for column in shown)
    statement = (
        f"SELECT d.uid, ('x' || left(md5('{int(enriched)}|' || {text}), 16))::bit(64)::bigint"
        f" FROM {items} d{joins} WHERE d.metadata IS NOT NULL"
    )
    dlm = connections[DLM_ALIAS]
    with transaction.atomic(using=DLM_ALIAS), dlm.chunked_cursor() as cursor:
        cursor.execute(statement)
        while chunk := cursor.fetchmany(BATCH * 10):
            yield from chunk


def mirror_row(item: DataItem, *, enriched: bool, fingerprint: int) -> DataProduct | None:
    """The catalogue row of one DLM copy; None when its metadata cannot make a
    product (logged with the uid: the DLM is not ours to correct)."""
    if not isinstance(item.metadata, dict):
        logger.warning("DLM item %s skipped: its metadata is not an object", item.uid)
        return None
    # dlm_oid first: the row's JSON text starts with it (dpd.models.DLM_ROW_START),
    # which is how a page tells a DLM row from a volume row without a column.
    document: dict[str, Any] = {"dlm_oid": str(item.oid or item.uid)}
    document.update((key, value) for key, value in item.metadata.items() if key != "dlm_oid")
    storage = item.storage if enriched else None
    location = storage.location if storage is not None else None
    for name in STORAGE_FIELDS:
        document[name] = getattr(storage, name, None)
    for name in LOCATION_FIELDS:
        document[name] = getattr(location, name, None)
    document["item_state"] = item.item_state
    # Checked as ingested metadata is, but not made JSON-safe nor walked for
    # NULs: it comes from jsonb, which holds neither (the walk was a third of
    # a sync's time on the bench's documents).
    try:
        execution_block = validate_document(document, require_files_list=False)
    except MetadataError as exc:
        logger.warning("DLM item %s skipped: %s", item.uid, exc)
        return None
    for derived in DERIVED_KEYS:  # ours, never the document's (as for ingested metadata)
        document.pop(derived, None)
    date_created = date_from_execution_block(execution_block)
    if date_created == FALLBACK_DATE and item.uid_creation is not None:
        date_created = item.uid_creation.date()  # the DLM's own date of the copy
    retired = item.item_state in RETIRED_STATES or bool(item.deleted) or bool(item.expired)
    row = DataProduct(
        uid=item.uid,
        execution_block=execution_block,
        metadata_file=None,
        dataproduct_file=None,
        date_created=date_created,
        metadata=document,
        access_group=(document.get("context") or {}).get("access_group"),
        source=DataProduct.Source.DLM_RETIRED if retired else DataProduct.Source.DLM,
        file_mtime_ns=fingerprint,
    )
    row.refresh_search_fields()  # with its source: the search text holds its store name
    return row


def _write(rows: list[DataProduct]) -> int:
    """Upsert by uid, leaving alone any catalogue row of another source that
    has the same uid (the DLM's uids are random, ours hashes: a clash is an
    accident, and the volume product wins)."""
    if not rows:
        return 0
    taken = set(
        DataProduct.objects.filter(uid__in=[row.uid for row in rows])
        .exclude(source__in=DLM_SOURCES)
        .values_list("uid", flat=True)
    )
    for uid in taken:
        logger.error("DLM item %s not listed: a catalogue product has the same uid", uid)
    rows = [row for row in rows if row.uid not in taken]
    DataProduct.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["uid"],
        update_fields=_FIELDS,
    )
    return len(rows)


# Everything fields_from() sets but the uid, plus what a mirror row adds; never
# the SDP flow columns (the flow watcher keeps those, dpd.sdp_sync).
_FIELDS = [
    "execution_block",
    "metadata_file",
    "dataproduct_file",
    "date_created",
    "metadata",
    "access_group",
    "search_text",
    "search_signature",
    "field_types",
    "field_values",
    "row_json",
    "source",
    "file_mtime_ns",
    "indexed_at",
]


def _batches(items: Iterable[Any], size: int = BATCH) -> Iterator[list[Any]]:
    items = list(items)
    for start in range(0, len(items), size):
        yield items[start : start + size]


def latest_sync() -> SyncState | None:
    return SyncState.objects.filter(pk=1).first()
