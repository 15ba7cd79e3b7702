"""Probes of the service's dependencies, for /readyz and /metrics.

The database is required (no request can be answered without it); etcd (the
SDP flow watcher) and the DLM are reported, never required: without them the
catalogue still serves what it has.

The DLM hook: the DLM bridge (dlm_bridge) registers its reachability check
with `set_dlm_probe()` from its AppConfig.ready(); until one is registered the
DLM is reported as not probed (`reachable: null` in /readyz, no
`dpd_dlm_reachable` sample in /metrics).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection

# () -> (reachable, error message or None); registered by the DLM bridge.
DlmProbe = Callable[[], tuple[bool, str | None]]
_dlm_probe: DlmProbe | None = None
# Once this process has seen every migration applied it stops asking:
# migrations are never unapplied under a running service.
_migrations_applied = False


def set_dlm_probe(probe: DlmProbe | None) -> None:
    """Register the DLM bridge's reachability check (None removes it)."""
    global _dlm_probe
    _dlm_probe = probe


def database_error() -> str | None:
    """None when the database answers a query, else why not (never raises)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        connection.close()  # the next probe reconnects
        return f"{type(exc).__name__}: {str(exc).strip()[:300]}"
    return None


def unapplied_migrations() -> list[str]:
    """The migrations this code has that the database lacks ("app.name")."""
    global _migrations_applied
    if _migrations_applied:
        return []
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    missing = [f"{migration.app_label}.{migration.name}" for migration, _ in plan]
    _migrations_applied = not missing
    return missing


def etcd_state(database_up: bool) -> dict[str, Any]:
    """What the writing SDP flow watcher last recorded (it alone talks to etcd)."""
    if not settings.SDP_ETCD_HOST:
        return {"configured": False, "connected": None, "required": False}
    connected = None
    if database_up:
        from dpd.sdp_watcher import watcher_status

        try:
            connected = watcher_status()["connected"]
        except DatabaseError:
            connection.close()
    return {"configured": True, "connected": connected, "required": False}


def dlm_state() -> dict[str, Any]:
    configured = settings.SKA_DATAPRODUCT_DLM_INTERFACE_ENABLED
    block: dict[str, Any] = {"configured": configured, "reachable": None, "required": False}
    if configured and _dlm_probe is not None:
        try:
            reachable, error = _dlm_probe()
        except Exception as exc:  # a probe must never fail the readiness answer
            reachable, error = False, f"{type(exc).__name__}: {exc}"
        block["reachable"] = bool(reachable)
        if error:
            block["error"] = error
    return block


def dlm_reachable() -> bool | None:
    """For /metrics: None while no probe is registered or the DLM is off."""
    return dlm_state()["reachable"]


def readiness() -> tuple[bool, dict[str, Any]]:
    """(ready, body): ready when the database answers and has every migration."""
    error = database_error()
    checks: dict[str, Any] = {"database": {"ok": error is None, "required": True}}
    if error:
        checks["database"]["error"] = error
        checks["migrations"] = {"ok": None, "required": True}
    else:
        try:
            missing = unapplied_migrations()
        except DatabaseError as exc:
            connection.close()
            missing = [f"unknown: {type(exc).__name__}"]
        checks["migrations"] = {"ok": not missing, "required": True}
        if missing:
            checks["migrations"]["unapplied"] = missing
    checks["etcd"] = etcd_state(database_up=error is None)
    checks["dlm"] = dlm_state()
    ready = bool(checks["database"]["ok"] and checks["migrations"]["ok"])
    body: dict[str, Any] = {"ready": ready, "checks": checks}
    if not ready:
        body["detail"] = (
            "Not ready: the database is unavailable."
            if error
            else "Not ready: the database lacks migrations (manage.py migrate)."
        )
    return ready, body
