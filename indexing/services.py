"""Indexing services other apps call: request a run, run one now.

(Stub: the background-indexing issue replaces the body with leader election,
IndexRun records and a django-q2 enqueue; the signatures stay.)
"""

from __future__ import annotations

from dataclasses import dataclass


class IndexingBusy(Exception):
    """A run is already in progress for this volume (the API answers 409)."""


@dataclass(frozen=True)
class RunTicket:
    """What a caller gets back for a requested run."""

    run_id: int | None


def request_reindex(trigger: str) -> RunTicket:
    """Start a run in the background; raise IndexingBusy if one is running."""
    from indexing.indexer import index_volume

    index_volume()
    return RunTicket(run_id=None)

