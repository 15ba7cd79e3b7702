"""`POST /annotation` and `GET /annotations/<uid>` (reference 2.12, 2.13).

Explicit APIViews because the shapes, codes and messages are fixed by the
SKA DPD API. The views parse and map refusals to codes; the rules live in
annotations.services.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations import services
from annotations.api.serializers import (
    AnnotationRequestSerializer,
    AnnotationSavedSerializer,
    AnnotationSerializer,
    DetailSerializer,
    NotProcessedSerializer,
)
from annotations.models import Annotation
from dpd import database_errors
from dpd.access import caller_identity, visible_products
from dpd.api.exceptions import database_error_response
from dpd.api.parsers import AnyContentTypeJSONParser, JSONParser
from dpd.links import PRODUCT_PAGE_HEADER, product_page_link

logger = logging.getLogger(__name__)

CREATED_MESSAGE = "New Data Annotation received and successfully saved."
UPDATED_MESSAGE = "Data Annotation received and updated successfully."
# Reference 1.3, word for word (including "PostgresSQL"): the dashboard knows it.
NOT_PROCESSED = {
    "status": "Received but not processed",
    "message": "PostgresSQL is not available, cannot access data annotations.",
}
NO_IDENTITY = "Authentication credentials were not provided; annotations need a signed-in user."

_REFUSAL_STATUS: tuple[tuple[type[services.AnnotationError], int], ...] = (
    (services.AnnotationTooLong, status.HTTP_413_REQUEST_ENTITY_TOO_LARGE),
    (services.InvalidAnnotation, status.HTTP_400_BAD_REQUEST),
    (services.ProductNotFound, status.HTTP_404_NOT_FOUND),
    (services.AnnotationNotFound, status.HTTP_404_NOT_FOUND),
    (services.NotAnnotationAuthor, status.HTTP_403_FORBIDDEN),
)


class AnnotationStoreView(APIView):
    """Shared by both endpoints: an unreachable database answers the
    reference's "Received but not processed" body instead of an error."""

    unavailable_status = status.HTTP_503_SERVICE_UNAVAILABLE
    database_error_message = ""

    def handle_exception(self, exc: Exception) -> Response:
        if not isinstance(exc, DatabaseError):
            return super().handle_exception(exc)
        cause = database_errors.cause(exc)
        if cause is database_errors.Cause.UNAVAILABLE:
            logger.warning("annotations: database unavailable: %s", exc)
            return Response(NOT_PROCESSED, status=self.unavailable_status)
        if cause in (database_errors.Cause.TOO_LARGE, database_errors.Cause.TIMED_OUT):
            return database_error_response(exc, self.request)
        logger.error("annotations: database error", exc_info=exc)
        return Response(
            {"detail": f"{self.database_error_message} Error: {type(exc).__name__}"},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )


def _detail(message: str, code: int, headers: dict[str, str] | None = None) -> Response:
    return Response({"detail": message}, status=code, headers=headers)


def _refusal(exc: services.AnnotationError) -> Response:
    code = next(code for kind, code in _REFUSAL_STATUS if isinstance(exc, kind))
    return _detail(exc.message, code)


def _saved(message: str, annotation: Annotation, code: int) -> Response:
    body = {"status": "success", "message": message, "annotation_id": annotation.annotation_id}
    return Response(body, status=code)


_UID = "76fba20e-208c-78d5-7b57-5d81d746dc90"


class AnnotationSaveView(AnnotationStoreView):
    # A form or text body is read as JSON too, so it is a 400 like any
    # malformed body (docs/annotations.md), not DRF's 415.
    parser_classes = [JSONParser, AnyContentTypeJSONParser]
    database_error_message = "Internal server error while saving new annotation."

    @extend_schema(
        operation_id="annotation_save",
        summary="Create an annotation, or update one when annotation_id is given",
        description=(
            "The author is the signed-in identity, never a body field. Only the author "
            "(or staff) may update an annotation; every update keeps the previous text in "
            "the annotation's history. Unknown body fields are ignored; on update "
            "`data_product_uid` is ignored (an annotation never moves)."
        ),
        request=AnnotationRequestSerializer,
        responses={
            201: OpenApiResponse(AnnotationSavedSerializer, "Created."),
            200: OpenApiResponse(AnnotationSavedSerializer, "Updated."),
            400: OpenApiResponse(DetailSerializer, "Empty or malformed text, uid or id."),
            401: OpenApiResponse(DetailSerializer, "No identity."),
            403: OpenApiResponse(DetailSerializer, "Another user's annotation."),
            404: OpenApiResponse(DetailSerializer, "Unknown annotation, or unknown product."),
            413: OpenApiResponse(DetailSerializer, "Text past ANNOTATION_MAX_LENGTH."),
            503: OpenApiResponse(NotProcessedSerializer, "The database is unreachable."),
        },
        examples=[
            OpenApiExample(
                "create",
                request_only=True,
                value={"data_product_uid": _UID, "annotation_text": "RFI visible in scan 3."},
            ),
            OpenApiExample(
                "update",
                request_only=True,
                value={"annotation_id": 21, "annotation_text": "RFI visible in scans 3 and 4."},
            ),
            OpenApiExample(
                "created",
                response_only=True,
                status_codes=["201"],
                value={"status": "success", "message": CREATED_MESSAGE, "annotation_id": 21},
            ),
            OpenApiExample(
                "updated",
                response_only=True,
                status_codes=["200"],
                value={"status": "success", "message": UPDATED_MESSAGE, "annotation_id": 21},
            ),
            OpenApiExample(
                "database unreachable",
                response_only=True,
                status_codes=["503"],
                value=NOT_PROCESSED,
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        author = caller_identity(request)
        if author is None:
            return _detail(
                NO_IDENTITY, status.HTTP_401_UNAUTHORIZED, {"WWW-Authenticate": "Bearer"}
            )
        body: Any = request.data
        if not isinstance(body, dict):
            return _detail("The body must be a JSON object.", status.HTTP_400_BAD_REQUEST)
        products = visible_products(request)
        try:
            if body.get("annotation_id") is not None:
                annotation = services.annotation_update(
                    annotation_id=body["annotation_id"],
                    text=body.get("annotation_text"),
                    editor=author,
                    editor_is_staff=request.user.is_staff,
                    products=products,
                )
                return _saved(UPDATED_MESSAGE, annotation, status.HTTP_200_OK)
            annotation = services.annotation_create(
                product_uid=body.get("data_product_uid"),
                text=body.get("annotation_text"),
                author=author,
                products=products,
            )
        except services.AnnotationError as exc:
            return _refusal(exc)
        return _saved(CREATED_MESSAGE, annotation, status.HTTP_201_CREATED)


class AnnotationListView(AnnotationStoreView):
    unavailable_status = status.HTTP_202_ACCEPTED
    database_error_message = "Internal server error while retrieving annotations."

    @extend_schema(
        operation_id="annotations_list",
        summary="A product's annotations, oldest first",
        description=(
            "Sorted by annotation_id; timestamps are naive UTC. 204 when the product has "
            "none, and also when no product with this uid is visible to the caller (unknown "
            'and hidden products look alike, and the dashboard reads 204 as "none yet").'
        ),
        parameters=[PRODUCT_PAGE_HEADER],
        responses={
            200: OpenApiResponse(AnnotationSerializer(many=True), "The product's annotations."),
            204: OpenApiResponse(description="No annotations (or no such visible product)."),
            400: OpenApiResponse(DetailSerializer, "The uid is not a UUID."),
            202: OpenApiResponse(NotProcessedSerializer, "The database is unreachable."),
        },
        examples=[
            OpenApiExample(
                "annotations",
                response_only=True,
                status_codes=["200"],
                # One element: drf-spectacular wraps list examples itself.
                value={
                    "annotation_id": 21,
                    "data_product_uid": _UID,
                    "annotation_text": "RFI visible in scan 3.",
                    "user_principal_name": "first.last@skao.int",
                    "timestamp_created": "2024-11-13T14:32:00.412233",
                    "timestamp_modified": "2024-11-13T14:32:00.412233",
                },
            ),
            OpenApiExample(
                "database unreachable",
                response_only=True,
                status_codes=["202"],
                value=NOT_PROCESSED,
            ),
        ],
    )
    def get(self, request: Request, data_product_uid: str) -> Response:
        try:
            uid = services.product_uid_parse(data_product_uid)
        except services.InvalidAnnotation as exc:
            return _refusal(exc)
        product = visible_products(request).filter(uid=uid)
        rows = list(Annotation.objects.on_products(product).order_by("annotation_id"))
        if not rows:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(
            AnnotationSerializer(rows, many=True).data, headers=product_page_link(request, uid)
        )
