"""GET /api/v1/index-runs/ and /api/v1/index-runs/<id>/: the history of
indexing runs as job resources, newest first."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from dpd.api.product_serializers import ErrorSerializer
from dpd.permissions import CanReindex
from indexing.api.serializers import IndexRunListSerializer, IndexRunSerializer
from indexing.models import IndexRun


class TimestampedPagination(LimitOffsetPagination):
    """A page with the server's time, so a polling client can tell which runs
    ended (terminal_timestamp) after it loaded the page. `limit` is capped
    (a huge one was a database error)."""

    max_limit = 200

    def get_paginated_response(self, data: list[Any]) -> Response:
        response = super().get_paginated_response(data)
        response.data["timestamp"] = timezone.now().isoformat()
        return response

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        schema = super().get_paginated_response_schema(schema)
        schema["properties"]["timestamp"] = {
            "type": "string",
            "format": "date-time",
            "description": "Server time when the page was made.",
        }
        schema["required"] = [*schema.get("required", []), "timestamp"]
        return schema


# CanReindex refuses callers without credentials (401) and without the permission (403).
REFUSALS = {
    401: OpenApiResponse(ErrorSerializer, description="Not signed in (see docs/security.md)."),
    403: OpenApiResponse(
        ErrorSerializer, description="Signed in without the permission (see docs/security.md)."
    ),
}


class IndexRunList(generics.ListAPIView):
    # Run logs name files, including those of access-group products.
    permission_classes = [CanReindex]
    queryset = IndexRun.objects.newest_first()
    serializer_class = IndexRunListSerializer
    pagination_class = TimestampedPagination

    @extend_schema(
        summary="Indexing runs, newest first",
        description="Every run: start-up, schedule, re-index requests, commands, and the "
        "runs a follower skipped because another instance was indexing.",
        responses={200: IndexRunListSerializer, **REFUSALS},
        tags=["indexing"],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class IndexRunDetail(generics.RetrieveAPIView):
    # Run logs name files, including those of access-group products.
    permission_classes = [CanReindex]
    queryset = IndexRun.objects.all()
    serializer_class = IndexRunSerializer

    @extend_schema(
        summary="One indexing run (job status)",
        description="`GET /reindexdataproducts` answers with this resource's URL in "
        "`Location`. `status` is queued, running, completed, timeout_partial_completion, "
        "error, skipped or interrupted (its service was stopped mid-run; the next run "
        "continues it); `terminal_timestamp` is set once it ended.",
        responses={
            200: IndexRunSerializer,
            404: OpenApiResponse(ErrorSerializer, description="No run has this id."),
            **REFUSALS,
        },
        tags=["indexing"],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
