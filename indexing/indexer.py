"""The volume indexer: walk, skip unchanged, parse in workers, upsert, remove.

Public entry point: `index_volume()`. Leadership, run records and scheduling
wrap it (indexing/services.py); it knows nothing about them, so the reindex
command, the API and django-q2 tasks all run exactly this code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class IndexProgress:
    """Live counters of one run, passed to `on_progress` after every batch.

    `step` uses the SKA DPD API's indexing_step values: "starting",
    "scanning_filesystem", "scanning_and_ingesting (N found, N ingested)",
    "ingesting_remaining (N files)", "completed", "timeout_partial_completion".
    """

    step: str = "starting"
    files_found: int = 0  # metadata files seen by the walk so far
    files_processed: int = 0  # files decided: skipped, parsed (ok or error)
    files_added: int = 0
    files_updated: int = 0
    files_skipped: int = 0  # unchanged since the last run: not read
    files_removed: int = 0
    work_units: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    walk_complete: bool = False


@dataclass
class IndexResult(IndexProgress):
    timed_out: bool = False
    seconds: float = 0.0


def index_volume(
    configured_root: str | None = None,
    *,
    on_progress: Callable[[IndexProgress], None] | None = None,
    deadline: float | None = None,
    workers: int | None = None,
    batch_size: int | None = None,
    work_unit_depth: int | None = None,
) -> IndexResult:
    """Index the volume at `configured_root` (default PERSISTENT_STORAGE_PATH).

    - `on_progress` is called after every batch is written; an exception it
      raises (e.g. lost leadership) aborts the run and propagates.
    - `deadline` is a time.monotonic() value: past it the run stops with
      timed_out=True, step "timeout_partial_completion", and no removals.
    - Raises VolumeUnavailable when the root does not exist or is not a directory.
    """
    raise NotImplementedError


class VolumeUnavailable(Exception):
    """The configured volume root does not exist or is not a directory."""
