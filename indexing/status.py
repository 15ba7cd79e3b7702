"""The indexing blocks of GET /status (reference 2.1), read from our own tables."""

from __future__ import annotations

from typing import Any

from django.conf import settings


def indexing_status() -> dict[str, Any]:
    """The `indexing` block: in_progress, progress, coordination_state."""
    return {
        "in_progress": False,
        "progress": {
            "files_processed": 0,
            "total_files": 0,
            "files_added": 0,
            "files_updated": 0,
            "files_skipped": 0,
            "indexing_step": "idle",
        },
        "coordination_state": None,
    }


def pv_index_status() -> dict[str, Any]:
    """The indexing fields of `pv_interface_status`."""
    return {
        "last_index_duration": None,
        "index_time_modified": None,
        "indexing_timeout_seconds": settings.INDEXING_TIMEOUT_SECONDS,
        "indexing_batch_size": settings.INDEXING_BATCH_SIZE,
        "indexing_parallel_workers": settings.INDEXING_PARALLEL_WORKERS,
        "indexing_work_unit_depth": settings.INDEXING_WORK_UNIT_DEPTH,
        "last_index_run": None,
    }
