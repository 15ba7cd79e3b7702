"""Every API error has a `detail` key (the dashboard reads it), and an
unreachable database is a 503, never a stack trace.

Database errors are answered by their cause (dpd.database_errors): only an
unreachable database is the 503 "not available"; a query the database
refuses for its size is the request's fault when the request's body shaped
it (a 400: sending it again never succeeds), ours otherwise; anything else
is a 500 with a `detail` and the traceback in the log.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError
from django.http import HttpResponse, JsonResponse
from rest_framework import status
from rest_framework.exceptions import MethodNotAllowed, UnsupportedMediaType, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler

from dpd import database_errors
from dpd.api.product_serializers import BoundedJSONParser, Unprocessable
from dpd.refusal import refusal_page

# Where the server-rendered pages live (dpd/urls.py).
PAGES_PREFIX = "/products/"

logger = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = "The metadata database is not available; try again shortly."
QUERY_TIMED_OUT = (
    "The metadata database stopped this request's query at its time limit "
    "(statement_timeout); narrow the request (a date range, a more specific filter) "
    "or try again when the service is less busy."
)
REQUEST_TOO_LARGE = (
    "The request is too large or complex for the database to answer ({reason}); "
    "narrow it (docs/api.md lists the bounds of a request)."
)
# Methods whose body shapes the queries they run (search, filter, ingest, annotate).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
METHOD_NOT_ALLOWED = "Method Not Allowed"


def _first_message(data: Any) -> str:
    """The first human-readable message in DRF's nested error structure."""
    if isinstance(data, dict):
        for key, value in data.items():
            message = _first_message(value)
            return message if key == "non_field_errors" else f"{key}: {message}"
    if isinstance(data, list) and data:
        return _first_message(data[0])
    return str(data)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DatabaseError):
        return database_error_response(exc, context.get("request"))
    view = context.get("view")
    if isinstance(exc, UnsupportedMediaType) and _reads_a_typed_body(view):
        # Upstream (FastAPI) validates a form or text body against the model: 422.
        sent = context["request"].content_type.split(";")[0].strip()
        exc = Unprocessable(
            f"The request body must be JSON (Content-Type application/json, or none), not {sent}."
        )
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, MethodNotAllowed):
        response.data = {"detail": METHOD_NOT_ALLOWED}  # upstream's text (reference 1.3)
        return response
    if isinstance(exc, ValidationError) or not (
        isinstance(response.data, dict) and "detail" in response.data
    ):
        response.data = {"detail": _first_message(response.data), "errors": response.data}
    return response


def database_error_response(exc: DatabaseError, request: Any) -> Response:
    """The answer to a database error, by its cause (module docstring)."""
    cause = database_errors.cause(exc)
    if cause is database_errors.Cause.UNAVAILABLE:
        logger.warning("database unavailable: %s", exc)
        return Response(
            {"detail": DATABASE_UNAVAILABLE}, status=status.HTTP_503_SERVICE_UNAVAILABLE
        )
    if cause is database_errors.Cause.TIMED_OUT:
        # The server's limit, not ours: the operator sees which query, and how long.
        logger.warning("database stopped a query at its time limit: %s", exc)
        return Response({"detail": QUERY_TIMED_OUT}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    if cause is database_errors.Cause.TOO_LARGE and getattr(request, "method", "") in _BODY_METHODS:
        # A request bound is missing or too loose: worth a traceback too.
        logger.warning("database refused a request's query for its size", exc_info=exc)
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        return Response(
            {"detail": REQUEST_TOO_LARGE.format(reason=reason)},
            status=status.HTTP_400_BAD_REQUEST,
        )
    logger.error("database error", exc_info=exc)
    return Response(
        {"detail": f"Database error: {type(exc).__name__}"},
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def _reads_a_typed_body(view: Any) -> bool:
    """Whether the view is one of the SKA DPD API's typed-body endpoints."""
    return any(
        isinstance(parser, type) and issubclass(parser, BoundedJSONParser)
        for parser in getattr(view, "parser_classes", ())
    )


def json_not_found(request, exception=None) -> HttpResponse:
    """JSON for the API; the pages' own HTML 404 under /products/ (people
    follow those links, e.g. with a mistyped uid)."""
    if request.path_info.startswith(PAGES_PREFIX):
        return refusal_page(request, 404, "There is no such page.")
    return JsonResponse({"detail": "Not Found"}, status=404)


def json_server_error(request) -> JsonResponse:
    return JsonResponse({"detail": "Internal server error"}, status=500)


def json_bad_request(request, exception=None) -> JsonResponse:
    return JsonResponse({"detail": "Bad request"}, status=400)


def json_permission_denied(request, exception=None) -> JsonResponse:
    return JsonResponse({"detail": "Permission denied"}, status=403)
