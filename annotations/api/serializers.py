"""Wire shapes of the annotation endpoints (reference 2.12, 2.13)."""

from __future__ import annotations

import datetime as dt

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotations.models import Annotation


@extend_schema_field(
    {
        "type": "string",
        "description": "UTC, ISO-8601 without an offset (the upstream's format).",
        "example": "2024-11-13T14:32:00.412233",
    }
)
class NaiveUTCDateTimeField(serializers.DateTimeField):
    """ISO-8601 in UTC without an offset, as the upstream returns annotation
    timestamps (e.g. "2024-11-13T14:32:00.412233")."""

    def to_representation(self, value: dt.datetime) -> str:
        return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat()


class AnnotationSerializer(serializers.ModelSerializer):
    timestamp_created = NaiveUTCDateTimeField(read_only=True)
    timestamp_modified = NaiveUTCDateTimeField(read_only=True)

    class Meta:
        model = Annotation
        fields = [
            "annotation_id",
            "data_product_uid",
            "annotation_text",
            "user_principal_name",
            "timestamp_created",
            "timestamp_modified",
        ]
        read_only_fields = fields


class AnnotationRequestSerializer(serializers.Serializer):
    """Documentation only: the view reads the raw JSON (reference 1.2) and the
    services validate it, so hostile values get the services' messages."""

    data_product_uid = serializers.UUIDField(
        required=False, help_text="The product to annotate (required to create)."
    )
    annotation_text = serializers.CharField(help_text="Not empty; at most ANNOTATION_MAX_LENGTH.")
    annotation_id = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="Present and not null: update this annotation instead of creating one.",
    )


class AnnotationSavedSerializer(serializers.Serializer):
    status = serializers.CharField()
    message = serializers.CharField()
    annotation_id = serializers.IntegerField(help_text="Addition to the upstream body.")


class NotProcessedSerializer(serializers.Serializer):
    status = serializers.CharField()
    message = serializers.CharField()


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()
