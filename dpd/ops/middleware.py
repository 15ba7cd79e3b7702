"""The operations endpoints, and one log line plus metrics per request."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

logger = logging.getLogger("dpd.requests")

_JSON = "application/json"


def _json(body: dict, status: int) -> HttpResponse:
    return HttpResponse(json.dumps(body), status=status, content_type=_JSON)


class OpsEndpointsMiddleware:
    """Answer /readyz and /metrics before the rest of the stack
    (dpd/ops/__init__.py says why; /healthz is answered before Django, in
    dpd.wsgi). Everything else passes through."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if path == "/readyz":
            from dpd.ops.probes import readiness

            ready, body = readiness()
            return _json(body, 200 if ready else 503)
        if path == "/metrics":
            from dpd.ops import metrics

            address = request.META.get("REMOTE_ADDR", "")
            if "HTTP_X_FORWARDED_FOR" in request.META:
                # Through the ingress (whose address may be in the allowed
                # networks): scrapers reach the pod directly.
                detail = "/metrics is not served through a proxy: scrape the pod directly."
                return _json({"detail": detail}, 403)
            if not metrics.allowed(address):
                detail = f"/metrics is not open to {address} (DPD_METRICS_ALLOWED_ADDRESSES)."
                return _json({"detail": detail}, 403)
            body, content_type = metrics.render()
            return HttpResponse(body, content_type=content_type)
        return self.get_response(request)


class RequestLogMiddleware:
    """One log line per request (logger `dpd.requests`, INFO) and the request
    metrics, labelled by route: the URL pattern that matched, so that a
    product's uid or a scanner's random paths never become a label value.
    The caller's identity is not logged: resolving it can cost a database
    query (down, or not needed by the view) or a call to the permissions API."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from dpd.ops.metrics import record_request

        started = time.perf_counter()
        response = self.get_response(request)
        seconds = time.perf_counter() - started
        match = getattr(request, "resolver_match", None)
        route = (match.route or match.view_name) if match else "unmatched"
        record_request(request.method or "", route, response.status_code, seconds)
        logger.info(
            '%s "%s %s" %s %.1f ms',
            request.META.get("REMOTE_ADDR", "-"),
            request.method,
            request.get_full_path(),
            response.status_code,
            seconds * 1000,
            extra={
                "client": request.META.get("REMOTE_ADDR"),
                "method": request.method,
                "path": request.path,
                "route": route,
                "status": response.status_code,
                "duration_ms": round(seconds * 1000, 2),
            },
        )
        return response
