"""Request bodies of the product endpoints: metadata, download and ingest.

The shapes are fixed by the SKA DPD API (reference 2.8-2.11): unknown fields
are ignored, a body that fails its model is a 422 as upstream (pydantic)
answers it, and a body over METADATA_MAX_BYTES is a 413 before it is parsed.
"""

from __future__ import annotations

import io
import uuid
from typing import Any

from django.conf import settings
from django.core.validators import ProhibitNullCharactersValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, ParseError, ValidationError

from dpd.api.parsers import JSONParser

# Strings a product body may carry that no other check bounds (the ingest
# paths are bounded by the path check: 4,096 bytes, 255 a name, a 400).
MAX_TEXT = 4096

MISSING_IDENTIFIER = (
    "Invalid product identifier: DataProductIdentifier must have either a UUID or an "
    "execution_block."
)


class Unprocessable(ValidationError):
    """A body that fails its model: 422, as the SKA DPD API answers it."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "body_too_large"


class BadRequest(APIException):
    """A 400 whose `detail` is a fixed message text of the SKA DPD API."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "bad_request"


class BoundedJSONParser(JSONParser):
    """JSON, refused with 413 past METADATA_MAX_BYTES before anything parses it.

    DRF reads the request stream itself, bypassing Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE, so the limit is enforced here; at most one
    byte past the limit is ever read, whatever Content-Length claims.
    """

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        limit = settings.METADATA_MAX_BYTES
        data = stream.read(limit + 1) if stream is not None else b""
        if len(data) > limit:
            raise BodyTooLarge(
                f"The request body is over the {limit}-byte limit (METADATA_MAX_BYTES)."
            )
        try:
            return super().parse(io.BytesIO(data), media_type, parser_context)
        except ParseError as exc:
            raise Unprocessable(f"JSON decode error: {exc.detail}") from None


MISSING_BODY = "The request body is missing; send a JSON object."


def json_body(request) -> Any:
    """The parsed body of a typed-body endpoint; none at all is a 422, as the
    SKA DPD API answers it (`{}` is a body, an empty request is not)."""
    data = request.data
    if request.stream is None:  # DRF's mark of an empty body
        raise Unprocessable(MISSING_BODY)
    return data


def body_object(request) -> dict[str, Any]:
    """The parsed body, which every product endpoint needs to be a JSON object."""
    data = json_body(request)
    if not isinstance(data, dict):
        raise Unprocessable(f"The request body must be a JSON object, not {_json_type(data)}.")
    return data


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return kinds.get(type(value), "a number")


class StrictCharField(serializers.CharField):
    """A string and only a string: 5 is not "5" (pydantic's `str`, which the
    SKA DPD API's clients are used to)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class PathField(StrictCharField):
    """A volume-relative path; NUL bytes reach the path check, which refuses
    them with the other escapes as a 400, not as a model error."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.validators = [
            validator
            for validator in self.validators
            if not isinstance(validator, ProhibitNullCharactersValidator)
        ]


@extend_schema_field(
    {
        "type": "string",
        "nullable": True,
        "description": "A data product uid: 32 hex digits, hyphens optional.",
        "example": "6a11ddaa-6b45-6759-47e7-a5abd5105b0e",
    }
)
class ProductUidField(serializers.Field):
    """A uid as the SKA DPD API writes it: 32 hex digits, hyphens optional,
    any version nibble (reference 4.1). Null and "" mean "not given"."""

    default_error_messages = {
        "invalid": "{value!r} is not a data product uid (32 hex digits with hyphens).",
        "type": "uid must be a string, not {kind}.",
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> uuid.UUID | None:
        if not isinstance(data, str):
            self.fail("type", kind=_json_type(data))
        if not data.strip():
            return None
        try:
            return uuid.UUID(data.strip())
        except ValueError:
            self.fail("invalid", value=data[:80])

    def to_representation(self, value: uuid.UUID) -> str:
        return str(value)


class ProductIdentifierSerializer(serializers.Serializer):
    """Body of /dataproductmetadata and /download; other fields are ignored
    (the dashboard also sends relativePathName and metaDataFile)."""

    uid = ProductUidField(help_text="The product's uid; it wins when both are given.")
    execution_block = StrictCharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=MAX_TEXT,
        help_text="An execution block: /download sends all its products.",
    )
    data_store = StrictCharField(
        required=False,
        default="dpd",
        max_length=MAX_TEXT,
        help_text="Accepted for compatibility; ignored.",
    )
    metadata_store_name = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=MAX_TEXT,
        help_text="Accepted for compatibility; ignored.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("execution_block"):
            attrs["execution_block"] = None
        if attrs.get("uid") is None and attrs["execution_block"] is None:
            raise BadRequest(MISSING_IDENTIFIER)
        return attrs


class IngestProductSerializer(serializers.Serializer):
    execution_block = PathField(
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="The product folder directly under the volume root.",
    )
    relativePathName = PathField(
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text=(
            "The product folder (or its metadata file) relative to the volume root; "
            "used instead of execution_block when it exists."
        ),
    )
    fullPathName = PathField(
        required=False, allow_null=True, allow_blank=True, max_length=MAX_TEXT, help_text="Ignored."
    )
    metaDataFile = PathField(
        required=False, allow_null=True, allow_blank=True, max_length=MAX_TEXT, help_text="Ignored."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("execution_block") and not attrs.get("relativePathName"):
            raise Unprocessable({"execution_block": ["This field is required."]})
        return attrs


class IngestResultSerializer(serializers.Serializer):
    """The object the SKA DPD API meant to send (without its [..., 201] wrapper)."""

    status = serializers.CharField()
    message = serializers.CharField()
    uid = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
