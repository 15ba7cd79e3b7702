"""Leader election for indexing: one instance per volume scans at a time.

The slot is a row of `dpd_indexing_state`. It is claimed with ONE conditional
UPDATE (the slot is free, or its holder's heartbeat is older than
INDEXING_HEARTBEAT_STALE_SECONDS) or, for a volume never seen, one INSERT that
the unique volume_prefix lets only one instance win. No lock is held while
indexing: the leader proves it is alive by heartbeating after every batch, and
every heartbeat also checks that the slot is still ours (a stalled leader whose
slot was reclaimed must stop writing progress for someone else's run).

Times come from the database clock (Now()), so instances on machines whose
clocks disagree still agree on who is stale.

A claim also records where its holder process runs (indexing/holder.py): an
instance on the same machine that can prove that process dead (a restart
after a crash or a kill) reclaims the slot at once instead of waiting for the
stale limit. Other instances cannot prove it and still wait.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import DateTimeField, ExpressionWrapper, Q, Value
from django.db.models.functions import Now

from indexing import holder as holder_process
from indexing.models import IndexingState


class LostLeadership(Exception):
    """Another instance holds the slot now; the run must stop."""


@dataclass(frozen=True)
class Lease:
    """Proof of holding a volume's slot: the token written by our claim."""

    volume_prefix: str
    holder: str
    token: uuid.UUID
    previous_holder: str  # who held it before, when we reclaimed a stale slot
    reclaimed: bool
    # Why the previous holder's slot could be taken ("" when it was free).
    reason: str = ""


@dataclass(frozen=True)
class ClaimResult:
    lease: Lease | None
    leader: str  # the holder's name when we lost

    @property
    def claimed(self) -> bool:
        return self.lease is not None


def volume_prefix(configured_root: str | None = None) -> str:
    """`dpd_` + 12 hex digits of the configured volume path's SHA-256."""
    path = configured_root if configured_root is not None else settings.PERSISTENT_STORAGE_PATH
    return "dpd_" + hashlib.sha256(path.encode()).hexdigest()[:12]


def instance_name() -> str:
    """DPD_INSTANCE_NAME, else hostname-pid (a pod name in Kubernetes)."""
    return settings.DPD_INSTANCE_NAME or f"{socket.gethostname()}-{os.getpid()}"


def stale_before(stale_seconds: int) -> ExpressionWrapper:
    """The database's now minus the stale limit: older heartbeats are dead."""
    return ExpressionWrapper(
        Now() - Value(timedelta(seconds=stale_seconds)), output_field=DateTimeField()
    )


def claim(
    prefix: str,
    holder: str,
    *,
    stale_seconds: int | None = None,
    force: bool = False,
) -> ClaimResult:
    """Try to become the volume's leader. `force` takes the slot even from a
    holder that still looks alive (operator recovery: `reindex --force`).

    The slot is free, stale, or held by a process proven dead from here
    (indexing/holder.py); the UPDATE then matches that holder's lease token,
    so two instances proving it together cannot both win."""
    stale = settings.INDEXING_HEARTBEAT_STALE_SECONDS if stale_seconds is None else stale_seconds
    token = uuid.uuid4()
    claimed_values: dict[str, Any] = {
        "indexed_by": holder,
        "indexing_running": True,
        "lease": token,
        "holder_process": holder_process.describe_this_process(),
        "started_at": Now(),
        "last_heartbeat": Now(),
        "completed_at": None,
        "run": None,
        "indexing_step": "starting",
        "files_processed": 0,
        "total_files": 0,
        "files_added": 0,
        "files_updated": 0,
        "files_skipped": 0,
    }
    # Read to say whom we replaced and to judge its process; the UPDATE decides.
    before = IndexingState.objects.filter(volume_prefix=prefix).first()
    gone = ""
    if before is not None and before.indexing_running and not force:
        gone = holder_process.gone_reason(before.holder_process, before.lease)
    slot = IndexingState.objects.filter(volume_prefix=prefix)
    if not force:
        free = (
            Q(indexing_running=False)
            | Q(last_heartbeat__isnull=True)
            | Q(last_heartbeat__lt=stale_before(stale))
        )
        slot = slot.filter(free | Q(lease=before.lease) if gone else free)
    # Bound before the slot is ours: whoever sees our claim can probe it.
    holder_process.hold_socket(token)
    if slot.update(**claimed_values):
        reclaimed = bool(before and before.indexing_running)
        previous = before.indexed_by if reclaimed else ""
        if not reclaimed:
            reason = ""
        elif force:
            reason = "forced away"
        elif gone:
            reason = f"its process is gone: {gone}"
        else:
            reason = "its heartbeat went stale"
        return ClaimResult(Lease(prefix, holder, token, previous, reclaimed, reason), "")
    if before is None:
        try:
            with transaction.atomic():
                IndexingState.objects.create(volume_prefix=prefix, **claimed_values)
        except IntegrityError:
            pass  # another instance inserted the row first: it is the leader
        else:
            return ClaimResult(Lease(prefix, holder, token, "", False), "")
    holder_process.drop_socket(token)
    return ClaimResult(None, current_leader(prefix))


def current_leader(prefix: str) -> str:
    return (
        IndexingState.objects.filter(volume_prefix=prefix)
        .values_list("indexed_by", flat=True)
        .first()
        or "unknown"
    )


def heartbeat(lease: Lease, **progress: Any) -> None:
    """Prove we are alive and publish progress; raise LostLeadership if the
    slot was reclaimed (our heartbeat went stale) or forced away."""
    updated = IndexingState.objects.filter(
        volume_prefix=lease.volume_prefix, lease=lease.token, indexing_running=True
    ).update(last_heartbeat=Now(), **progress)
    if not updated:
        raise LostLeadership(
            f"Another instance ({current_leader(lease.volume_prefix)}) took over "
            f"the indexing slot of {lease.volume_prefix}."
        )


def release(lease: Lease, *, step: str, completed: bool, **fields: Any) -> bool:
    """Give the slot back. `completed` records completed_at (the volume was
    indexed, fully or up to the timeout); an error leaves it as it was."""
    values: dict[str, Any] = {
        "indexing_running": False,
        "last_heartbeat": Now(),
        "indexing_step": step,
        **fields,
    }
    if completed:
        values["completed_at"] = Now()
    released = IndexingState.objects.filter(
        volume_prefix=lease.volume_prefix, lease=lease.token
    ).update(**values)
    holder_process.drop_socket(lease.token)
    return bool(released)


def is_busy(prefix: str, *, stale_seconds: int | None = None) -> bool:
    """True while a live leader holds the slot (a stale holder, or one whose
    process is proven gone, does not count)."""
    return live_holder(prefix, stale_seconds=stale_seconds) is not None


def live_holder(prefix: str, *, stale_seconds: int | None = None) -> IndexingState | None:
    """The slot while its holder may be alive: running, heartbeat fresh, and
    its process not proven gone from here."""
    stale = settings.INDEXING_HEARTBEAT_STALE_SECONDS if stale_seconds is None else stale_seconds
    state = IndexingState.objects.filter(
        volume_prefix=prefix,
        indexing_running=True,
        last_heartbeat__gte=stale_before(stale),
    ).first()
    if state is None or holder_process.gone_reason(state.holder_process, state.lease):
        return None
    return state
