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

# The bounds of every list and string a search or filter body may carry
# (docs/api.md, "Request bounds"). Past one, the body is refused with a 4xx
# naming the field, before any query is built: an unbounded list once reached
# SQLite as a 1,000-deep OR ("Expression tree is too large") and PostgreSQL
# as a megabyte regular expression that took minutes to compile.
MAX_TEXT = 4096  # any string: a value, a field name, a key:value pair, a date
MAX_KEYWORD = 64  # operator, logicOperator, sort direction
MAX_KEY_VALUE_PAIRS = 64
MAX_FILTER_ITEMS = 64
MAX_SORT_ITEMS = 16
# An isAnyOf list (or comma-separated string): its values, and their
# characters in all, so that its one condition (one regular expression, or
# one array) is never larger than a single 4,096-character value's.
MAX_ANY_OF_VALUES = 256
MAX_ANY_OF_CHARACTERS = MAX_TEXT
# Everything one body asks to match (key:value pairs; filter values, isAnyOf
# values and legacy keyPairs of both item lists), in all. Each becomes a
# regular expression that PostgreSQL tests on every candidate row, at a cost
# that grows with its length: at 64 pairs of 4,096 characters (each within
# its own bound) one search of the 15-product sample took 15 s, an OR of
# four 4,096-character filter values 2.8 s; 4,096 characters in all, 0.3 s.
MAX_MATCH_CHARACTERS = MAX_TEXT
# Offsets past this are past the end of any catalogue: clamped, so an absurd
# page number answers an empty page, not a database error (bigint overflow).
MAX_OFFSET = 2**31 - 1


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
        kwargs.setdefault("max_length", MAX_TEXT)
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
            _match_size("key_value_pairs", sum(map(len, attrs.get("key_value_pairs") or [])))
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


def _match_size(name: str, characters: int) -> None:
    if characters > MAX_MATCH_CHARACTERS:
        raise ValidationError(
            {
                name: [
                    f"Ensure what this body asks to match has at most {MAX_MATCH_CHARACTERS} "
                    f"characters in all (it has {characters})."
                ]
            }
        )


def _item_match_size(item: Any) -> int:
    """The characters an item of an item list asks to match."""
    if not isinstance(item, dict):
        return 0
    value, size = item.get("value"), 0
    for element in value if isinstance(value, list) else [value]:
        if isinstance(element, str):
            size += len(element)
    for pair in item.get("keyPairs") or []:
        for text in pair.values():
            size += len(text) if isinstance(text, str) else 0
    return size


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


def _scalar(value: Any) -> None:
    """A JSON string (at most MAX_TEXT characters), number, boolean or null."""
    if isinstance(value, dict | list):
        raise serializers.ValidationError("Must be a string, a number, a boolean or null.")
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise serializers.ValidationError(
            f"Ensure this value has at most {MAX_TEXT} characters (it has {len(value)})."
        )


def _filter_value(value: Any) -> None:
    """A scalar, or a list (isAnyOf) of at most MAX_ANY_OF_VALUES scalars whose
    text has at most MAX_ANY_OF_CHARACTERS characters in all."""
    if not isinstance(value, list):
        _scalar(value)
        return
    if len(value) > MAX_ANY_OF_VALUES:
        raise serializers.ValidationError(
            f"Ensure this list has at most {MAX_ANY_OF_VALUES} values (it has {len(value)})."
        )
    for element in value:
        if isinstance(element, dict | list):
            raise serializers.ValidationError(
                "A list value holds strings, numbers, booleans or nulls only."
            )
    _any_of_size(search.any_of_values(value))


def _any_of_size(values: list[str]) -> None:
    if len(values) > MAX_ANY_OF_VALUES:
        raise serializers.ValidationError(
            f"Ensure this isAnyOf value has at most {MAX_ANY_OF_VALUES} values "
            f"(it has {len(values)})."
        )
    characters = sum(map(len, values))
    if characters > MAX_ANY_OF_CHARACTERS:
        raise serializers.ValidationError(
            f"Ensure this isAnyOf value has at most {MAX_ANY_OF_CHARACTERS} characters "
            f"in all its values (it has {characters})."
        )


def _key_pair(value: Any) -> None:
    """A legacy {"keyPair": key, "valuePair": value}: scalars only."""
    if len(value) > 2 * MAX_KEYWORD:
        raise serializers.ValidationError(f"Ensure this object has at most {2 * MAX_KEYWORD} keys.")
    for inner in value.values():
        _scalar(inner)


class FilterItemSerializer(serializers.Serializer):
    field = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=MAX_TEXT
    )
    operator = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=MAX_KEYWORD
    )
    value = serializers.JSONField(
        required=False,
        allow_null=True,
        validators=[_no_null_characters, _filter_value],
        help_text=f"A string, number, or list (isAnyOf: at most {MAX_ANY_OF_VALUES} values, "
        f"{MAX_ANY_OF_CHARACTERS} characters in all).",
    )
    id = serializers.JSONField(
        required=False, allow_null=True, validators=[_scalar], help_text="Ignored."
    )
    keyPairs = serializers.ListField(
        child=serializers.DictField(validators=[_key_pair]),
        required=False,
        allow_null=True,
        max_length=MAX_KEY_VALUE_PAIRS,
        validators=[_no_null_characters],
        help_text='Legacy `formFields` item: [{"keyPair": key, "valuePair": value}].',
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # A comma-separated isAnyOf string holds as many values as a list may.
        if attrs.get("operator") == "isAnyOf" and isinstance(attrs.get("value"), str):
            try:
                _any_of_size(search.any_of_values(attrs["value"]))
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"value": exc.detail}) from None
        return attrs

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # Keep the item as sent: search.filter_products ignores what it cannot use.
        super().to_internal_value(data)
        return data


class FilterModelSerializer(serializers.Serializer):
    items = serializers.ListField(
        child=FilterItemSerializer(), required=False, max_length=MAX_FILTER_ITEMS
    )
    logicOperator = serializers.CharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=MAX_KEYWORD,
        help_text='"and" (default) or "or".',
    )
    quickFilterValues = serializers.ListField(
        child=serializers.JSONField(validators=[_scalar]),
        required=False,
        max_length=MAX_FILTER_ITEMS,
        help_text="Ignored (as upstream).",
    )
    quickFilterLogicOperator = serializers.CharField(
        required=False, allow_null=True, max_length=MAX_KEYWORD, help_text="Ignored."
    )


class SortItemSerializer(serializers.Serializer):
    field = serializers.CharField(max_length=MAX_TEXT)
    sort = serializers.CharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=MAX_KEYWORD,
        help_text='"asc" or "desc".',
    )


class FilterRequestSerializer(RequestBodySerializer):
    filterModel = FilterModelSerializer(required=False, allow_null=True)
    searchPanelOptions = FilterModelSerializer(required=False, allow_null=True)
    sortModel = serializers.ListField(
        child=SortItemSerializer(), required=False, allow_null=True, max_length=MAX_SORT_ITEMS
    )
    page = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    pageSize = serializers.IntegerField(required=False, allow_null=True, min_value=1)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        characters = 0
        for name in ("filterModel", "searchPanelOptions"):
            items = (attrs.get(name) or {}).get("items") or []
            characters += sum(map(_item_match_size, items))
            _match_size(name, characters)
        return attrs

    @staticmethod
    def page_bounds(data: dict[str, Any]) -> tuple[int, int] | None:
        """(offset, size) when page or pageSize was sent; pageSize is capped."""
        if data.get("page") is None and data.get("pageSize") is None:
            return None
        size = min(data.get("pageSize") or 25, settings.SEARCH_MAX_PAGE_SIZE)
        return min((data.get("page") or 0) * size, MAX_OFFSET), size
