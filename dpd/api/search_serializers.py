"""Request bodies of the search endpoints: /dataproductsearch, /filterdataproducts.

Shapes are fixed by the SKA DPD API (reference 2.3, 2.4); unknown fields are
ignored. /dataproductsearch is a typed-body endpoint, so a body that fails its
model is a 422 as upstream answers it; /filterdataproducts read raw JSON
upstream (a 500 on bad bodies, 8.2 #24), and answers 400 here (2.4 [rec]).
"""

from __future__ import annotations

from functools import cache
from typing import Any, Self

from django.conf import settings
from rest_framework import serializers
from rest_framework.exceptions import APIException, ValidationError

from dpd import search

MAX_KEY_VALUE_PAIRS = 64
# Offsets past this are past the end of any catalogue: clamped, so an absurd
# page number answers an empty page, not a database error (bigint overflow).
MAX_OFFSET = 2**31 - 1
MAX_FILTER_ITEMS = 64


# A request body validated by one instance of its class per process. DRF
# deep-copies a serializer's declared fields, nested serializers and theirs
# included, whenever one is created: 0.65 ms of the grid's ~7 ms filter
# request at 100,000 products (96 us validating with a prebuilt instance).
# Validating keeps nothing on the instance (run_validation returns what it
# validated), so one instance serves every request; a body that fails is
# validated again by a new one, whose errors are exactly what is_valid()
# reports. (A comment, not a docstring: the schema would show a docstring as
# every subclass's description.)
class RequestBodySerializer(serializers.Serializer):
    @classmethod
    def validated(cls, data: Any) -> dict[str, Any]:
        try:
            return cls._prototype().run_validation(data)
        except ValidationError:
            serializer = cls(data=data)
            serializer.is_valid()
            raise ValidationError(serializer.errors) from None

    @classmethod
    @cache
    def _prototype(cls) -> Self:
        return cls()


class _Text(serializers.CharField):
    """A string exactly as sent: numbers and booleans are not silently turned into text."""

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("max_length", 4096)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class SearchRequestSerializer(RequestBodySerializer):
    # Absent, a bound is upstream's default; null or "" is no bound.
    start_date = _Text(
        default="2020-01-01",
        allow_null=True,
        help_text="Inclusive lower bound on date_created, YYYY-MM-DD (one-digit month and "
        'day too); "" or null means none. An ISO timestamp counts by its date.',
    )
    end_date = _Text(
        default="2100-01-01",
        allow_null=True,
        help_text='Inclusive upper bound on date_created; "" or null means none.',
    )
    key_value_pairs = serializers.ListField(
        child=_Text(),
        required=False,
        allow_null=True,
        max_length=MAX_KEY_VALUE_PAIRS,
        help_text='"key:value" strings, all of which must match: some field whose name '
        "contains key has a value containing value (case-sensitive).",
    )
    start = serializers.IntegerField(
        required=False, min_value=0, help_text="Paging (extension): rows to skip."
    )
    count = serializers.IntegerField(
        required=False, min_value=1, help_text="Paging (extension): rows to return."
    )
    offset = serializers.IntegerField(required=False, min_value=0, help_text="Same as start.")
    limit = serializers.IntegerField(required=False, min_value=1, help_text="Same as count.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The pair check comes first, as upstream (reference 2.3).
        try:
            attrs["pairs"] = search.parse_key_value_pairs(attrs.get("key_value_pairs") or [])
            attrs["start_bound"] = search.parse_date_bound(attrs["start_date"], "start_date")
            attrs["end_bound"] = search.parse_date_bound(attrs["end_date"], "end_date")
        except search.SearchError as exc:
            raise SearchBadRequest(str(exc)) from None
        return attrs

    @staticmethod
    def page(body: dict[str, Any], data: dict[str, Any]) -> tuple[int, int] | None:
        """(offset, size) when the body asked for paging, the size capped."""
        if not any(name in body for name in ("start", "count", "offset", "limit")):
            return None
        offset = data.get("start", data.get("offset", 0))
        size = data.get(
            "count", data.get("limit", settings.SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT)
        )
        return min(offset, MAX_OFFSET), min(size, settings.SEARCH_MAX_PAGE_SIZE)


class SearchBadRequest(APIException):
    """A 400 whose body is exactly {"detail": message} (e.g. "Invalid search key pair.")."""

    status_code = 400
    default_code = "bad_request"


def _no_null_characters(value: Any) -> None:
    """PostgreSQL text cannot hold NUL: refuse it anywhere in a JSON value (400),
    as the CharFields do, instead of letting the query fail."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str) and "\x00" in node:
            raise serializers.ValidationError("Null characters are not allowed.")
        if isinstance(node, dict):
            stack.extend([*node.keys(), *node.values()])
        elif isinstance(node, list):
            stack.extend(node)


class FilterItemSerializer(serializers.Serializer):
    field = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    operator = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    value = serializers.JSONField(
        required=False,
        allow_null=True,
        validators=[_no_null_characters],
        help_text="A string, number, or list (isAnyOf).",
    )
    id = serializers.JSONField(required=False, allow_null=True, help_text="Ignored.")
    keyPairs = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        allow_null=True,
        validators=[_no_null_characters],
        help_text='Legacy `formFields` item: [{"keyPair": key, "valuePair": value}].',
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # Keep the item as sent: search.filter_products ignores what it cannot use.
        super().to_internal_value(data)
        return data


class FilterModelSerializer(serializers.Serializer):
    items = serializers.ListField(
        child=FilterItemSerializer(), required=False, max_length=MAX_FILTER_ITEMS
    )
    logicOperator = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, help_text='"and" (default) or "or".'
    )
    quickFilterValues = serializers.ListField(required=False, help_text="Ignored (as upstream).")
    quickFilterLogicOperator = serializers.CharField(
        required=False, allow_null=True, help_text="Ignored."
    )


class SortItemSerializer(serializers.Serializer):
    field = serializers.CharField()
    sort = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, help_text='"asc" or "desc".'
    )


class FilterRequestSerializer(RequestBodySerializer):
    filterModel = FilterModelSerializer(required=False, allow_null=True)
    searchPanelOptions = FilterModelSerializer(required=False, allow_null=True)
    sortModel = serializers.ListField(
        child=SortItemSerializer(), required=False, allow_null=True, max_length=16
    )
    page = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    pageSize = serializers.IntegerField(required=False, allow_null=True, min_value=1)

    @staticmethod
    def page_bounds(data: dict[str, Any]) -> tuple[int, int] | None:
        """(offset, size) when page or pageSize was sent; pageSize is capped."""
        if data.get("page") is None and data.get("pageSize") is None:
            return None
        size = min(data.get("pageSize") or 25, settings.SEARCH_MAX_PAGE_SIZE)
        return min((data.get("page") or 0) * size, MAX_OFFSET), size
