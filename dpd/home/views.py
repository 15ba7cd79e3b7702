"""GET / : the home page (server-rendered, readable without JavaScript).

Anyone may open it: every figure is scoped to what the caller may see, and
the API, database and indexing state are those `/status` gives everyone.
While a run is going the page follows it: a small script of our own polls
`/status` and moves the progress bar (and reloads the page once the run
ends); without JavaScript a meta refresh reloads the page instead.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.dateparse import parse_duration
from django.views.decorators.http import require_http_methods

from dlm_bridge import services as dlm
from dpd.home.chart import products_chart
from dpd.home.figures import duration_text, home_figures
from dpd.status import api_status

logger = logging.getLogger(__name__)

# Seconds between two looks at a run in progress (script or meta refresh).
REFRESH_SECONDS = 2


def indexing_progress(indexing: dict[str, Any]) -> dict[str, Any]:
    """The progress bar's figures from /status's `indexing` block."""
    progress = indexing.get("progress") or {}
    processed = progress.get("files_processed") or 0
    total = progress.get("total_files") or 0
    return {
        "running": bool(indexing.get("in_progress")),
        "step": progress.get("indexing_step") or "unknown",
        "processed": processed,
        "total": total,
        "percent": round(100 * processed / total) if total else 0,
        "added": progress.get("files_added"),
        "updated": progress.get("files_updated"),
        "skipped": progress.get("files_skipped"),
        "stalled": indexing.get("stalled"),
        "leader": (indexing.get("coordination_state") or {}).get("indexed_by"),
    }


@require_http_methods(["GET", "HEAD"])
def home(request: HttpRequest) -> HttpResponse:
    status = api_status()
    database_up = status["metadata_store_status"]["db_status"]["running"]
    figures: dict[str, Any] = {}
    if database_up:
        try:
            last_update = status["metadata_store_status"]["last_metadata_update_time"]
            figures = home_figures(request, last_update, dlm.hidden_sources())
        except DatabaseError as exc:  # went down between /status's probe and now
            logger.warning("home page: database unavailable: %s", exc)
            database_up = False
    progress = indexing_progress(status["indexing"])
    last_duration = status["pv_interface_status"]["last_index_duration"]
    context = {
        "status": status,
        "database": status["metadata_store_status"]["database"],
        "database_up": database_up,
        "progress": progress,
        "refresh_seconds": REFRESH_SECONDS,
        "last_duration": duration_text(parse_duration(last_duration)) if last_duration else None,
        "chart": products_chart(figures.get("per_month", [])),
        # Served by the metrics endpoint of the operations work (issue 21's other half).
        "metrics_url": f"{settings.API_ROOT_PATH}/metrics",
        **figures,
    }
    # An operator's probe of the page itself learns that the database is down.
    return render(request, "dpd/home.html", context, status=200 if database_up else 503)
