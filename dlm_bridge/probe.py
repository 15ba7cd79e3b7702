"""Can this process read the DLM now, and how much of it?

The SKA DPD API probes at start-up (reference dlm-sdp.md 1.5): no SELECT on
`data_item` disables the DLM, SELECT on `data_item` but not on `storage` and
`location` gives items without enrichment. Here the same probe is repeated
whenever its answer is older than DLM_PROBE_SECONDS, in whichever process
asks (a web worker answering a search, the sync task): a DLM database that
goes away hides the DLM's rows within seconds, and they come back once it
answers again, with no restart. One cheap statement on the `dlm` connection;
a server that refuses connections fails at once, an unreachable host within
DLM_CONNECT_TIMEOUT.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connections

from dlm_bridge.models import DataItem, Location, Storage
from dlm_bridge.router import DLM_ALIAS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Probe:
    """One probe's answer."""

    enabled: bool
    reachable: bool = False
    items_readable: bool = False  # SELECT on data_item
    tables_readable: bool = False  # SELECT on storage and location too
    error: str | None = None  # why the DLM (or its enrichment) is not available
    at: float = 0.0

    @property
    def serves_items(self) -> bool:
        return self.enabled and self.reachable and self.items_readable


_lock = threading.Lock()
_last: Probe | None = None


def current(*, max_age: float | None = None) -> Probe:
    """The last probe, or a new one when it is older than `max_age`
    (default DLM_PROBE_SECONDS)."""
    global _last
    if not settings.SKA_DATAPRODUCT_DLM_INTERFACE_ENABLED:
        return Probe(enabled=False, error="SKA_DATAPRODUCT_DLM_INTERFACE_ENABLED is false")
    limit = settings.DLM_PROBE_SECONDS if max_age is None else max_age
    last = _last
    if last is not None and time.monotonic() - last.at < limit:
        return last
    with _lock:
        if _last is not None and time.monotonic() - _last.at < limit:
            return _last
        _last = probe()
        return _last


def forget() -> None:
    """The next `current()` probes again (tests, and after a failed read)."""
    global _last
    _last = None


def probe() -> Probe:
    connection = connections[DLM_ALIAS]
    now = time.monotonic()
    if connection.vendor != "postgresql":
        return Probe(enabled=True, error="the DLM bridge needs PostgreSQL", at=now)
    tables = [model._meta.db_table for model in (DataItem, Storage, Location)]
    readable = (
        "CASE WHEN to_regclass(%s) IS NULL THEN NULL ELSE has_table_privilege(%s, 'SELECT') END"
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {', '.join([readable] * len(tables))}",
                [name for table in tables for name in (table, table)],
            )
            answers = cursor.fetchone()
    except DatabaseError as exc:
        _drop(connection)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        logger.warning("DLM database unreachable: %s: %s", type(exc).__name__, reason)
        return Probe(
            enabled=True,
            error=f"DLM database unreachable: {type(exc).__name__}: {reason}",
            at=now,
        )
    missing = [table for table, answer in zip(tables, answers, strict=True) if answer is None]
    denied = [table for table, answer in zip(tables, answers, strict=True) if answer is False]
    if answers[0] is not True:
        why = "does not exist" if answers[0] is None else "is not readable (SELECT denied)"
        return Probe(enabled=True, reachable=True, error=f"DLM table {tables[0]} {why}", at=now)
    error = None
    if missing or denied:
        error = "; ".join(
            [f"{table} does not exist" for table in missing]
            + [f"permission denied for table {table}" for table in denied]
        )
    return Probe(
        enabled=True,
        reachable=True,
        items_readable=True,
        tables_readable=error is None,
        error=error,
        at=now,
    )


def _drop(connection) -> None:
    """Forget a broken connection: the next use connects afresh."""
    try:
        connection.close()
    except DatabaseError:
        connection.connection = None
