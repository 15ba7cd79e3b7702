"""Search and filter requests -> QuerySets (reference sections 3 and 4.5).

Two entry points, both narrowed by dpd.access to what the caller may see:

- `search_products`: /dataproductsearch (date range, key:value substrings),
  open products only whoever calls (`open_candidates`);
- `filter_products`: /filterdataproducts (the MUI data grid's filter model,
  the search panel, the sort model), from the caller's visible products.

All matching runs in the database. Substring semantics go through the
derived `search_text` column and its trigram index (dpd/search_text.py),
equality on a row field through `field_values` and its GIN index
(`_equals_q`), execution_block's through its folded column
(dpd.models.FoldedLike); user text only ever reaches SQL as escaped pattern
parameters, array elements or JSON key names, never as ORM lookups.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import (
    BooleanField,
    CharField,
    F,
    Func,
    Max,
    Q,
    QuerySet,
    TextField,
    Value,
)
from django.db.models.functions import Coalesce
from django.db.models.lookups import Regex

from dpd import search_pieces, search_sort, search_text
from dpd.access import visible_to
from dpd.models import DLM_SOURCES, DLM_STORE_NAME, DataProduct
from dpd.remembered_counts import Remembered
from dpd.search_sort import document_value

INVALID_KEY_PAIR = "Invalid search key pair."
# Items that every product passes, or none (a date test, a store name test):
# SQL constants, so that OR, AND and NOT treat them as any other condition.
# An empty Q() is not "every product": Django drops it from an OR, which then
# matched only the other items, and its negation is empty again.
EVERY_PRODUCT = Q(Value(True, output_field=BooleanField()))
NO_PRODUCT = Q(Value(False, output_field=BooleanField()))
# The date that starts an ISO timestamp (never the basic 20200101 form).
_TIMESTAMP_DATE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]")

# The grid's fixed columns (reference 2.5), and the row fields the API derives.
FIXED_COLUMNS = (
    ("execution_block", "Execution Block", 250),
    ("date_created", "Date Created", 150),
    ("config.processing_block", "Processing Block", 250),
    ("config.processing_script", "Processing script", 150),
    ("context.observer", "Observer", 150),
    ("context.intent", "Intent", 150),
    ("context.notes", "Notes", 500),
    ("size", "File size", 80),
    ("status", "Status", 80),
)
DERIVED_FIELDS = {
    "date_created": "date",
    "dataproduct_file": "string",
    "metadata_file": "string",
    "metadata_store_name": "string",
    "uid": "string",
    # Kept by the SDP flow watcher (dpd.sdp_sync): filterable before any product has flows.
    "sdp_flow_status": "string",
}
# Row fields stored as columns: sorted by the column, not the document.
_COLUMN_FIELDS = ("execution_block", "uid", "metadata_file", "dataproduct_file", "sdp_flow_status")


class SearchError(ValueError):
    """A request that cannot be answered; the message is the API's `detail`."""


# --- /dataproductsearch ----------------------------------------------------------


def parse_key_value_pairs(pairs: Iterable[str]) -> list[tuple[str, str]]:
    """`key:value` strings split at the first colon (not cut at a second one,
    unlike upstream 8.2 #5); any pair without a colon is a 400."""
    parsed = []
    for pair in pairs:
        key, colon, value = pair.partition(":")
        if not colon:
            raise SearchError(INVALID_KEY_PAIR)
        parsed.append((key, value))
    return parsed


def parse_date(value: str) -> dt.date | None:
    """A date as upstream reads it, with `%Y-%m-%d` (so `2022-12-1` too:
    scripts written against it may send that), or an ISO timestamp whose
    calendar date is taken as written."""
    text = value.strip()
    try:
        return dt.datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        pass
    if not _TIMESTAMP_DATE.match(text):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        return None


def parse_date_bound(value: str | None, name: str) -> dt.date | None:
    """A search bound: "" and null are no bound (reference 2.3 [rec]: null is
    empty; upstream refused it with 422); anything unparseable is a 400
    (reference 3.2 [rec]; upstream ignored it)."""
    if value is None or not value.strip():
        return None
    parsed = parse_date(value)
    if parsed is None:
        raise SearchError(f"Invalid {name}: {value!r} is not a date (use YYYY-MM-DD).")
    return parsed


def key_value_q(key: str, value: str) -> Q:
    """Some field whose name contains `key` and whose value contains `value`,
    case-sensitively (reference 3.3).

    On PostgreSQL the trigram index may be given pieces of the pair instead of
    the whole pattern (dpd.search_pieces says why); the pattern then tests
    only their candidates, through an expression the index cannot serve."""
    pattern = search_text.key_value_pattern(key, value)
    pieces = search_pieces.index_pieces(key, value) if settings.IS_POSTGRESQL else None
    if pieces is None:
        return Q(search_text__regex=pattern)
    q = Q(Regex(Unindexed("search_text"), pattern))
    for piece in pieces:
        q &= Q(search_text__contains=piece)
    return q


class Unindexed(Func):
    """A text column as an expression no index serves (`column || ''`): its
    test runs on the rows the other conditions' indexes give."""

    template = "(%(expressions)s || '')"
    output_field = TextField()


def open_candidates(
    start_date: dt.date | None,
    end_date: dt.date | None,
    *,
    placeholders: bool = True,
    hidden_sources: frozenset[str] = frozenset(),
) -> QuerySet[DataProduct]:
    """The open products in the inclusive date range, newest first (reference
    3.2): /dataproductsearch shows scripts open products only, whoever calls
    (reference 1.6); SDP placeholder rows too unless `placeholders` is False
    (dpd.access.sees_placeholders); no row of the `hidden_sources` (the DLM's
    while it does not answer: the caller says, dlm_bridge.services)."""
    products = DataProduct.objects.filter(visible_to(frozenset()))
    hidden = sorted({*hidden_sources, *([] if placeholders else [DataProduct.Source.SDP])})
    if len(hidden) == 1:
        products = products.exclude(source=hidden[0])
    elif hidden:
        products = products.exclude(source__in=hidden)
    if start_date is not None:
        products = products.filter(date_created__gte=start_date)
    if end_date is not None:
        products = products.filter(date_created__lte=end_date)
    return products.in_display_order()


def search_products(
    *,
    start_date: dt.date | None,
    end_date: dt.date | None,
    pairs: list[tuple[str, str]],
    placeholders: bool = True,
    hidden_sources: frozenset[str] = frozenset(),
) -> QuerySet[DataProduct]:
    """Open products in the inclusive date range AND matching every pair,
    newest first (reference 3.2-3.4)."""
    products = open_candidates(
        start_date, end_date, placeholders=placeholders, hidden_sources=hidden_sources
    )
    for key, value in pairs:
        products = products.filter(key_value_q(key, value))
    return products


# --- The field catalogue (grid columns, known filter fields) ----------------------


_FIELDS_CACHE_KEY = "dpd:catalogue-fields"
# A change since the cached catalogue reads only the rows indexed since then
# (less this margin, for batches whose transaction committed late); the whole
# table is read again at most this often, which also drops removed fields.
_RECENT_MARGIN = dt.timedelta(minutes=10)
_FULL_REFRESH = dt.timedelta(hours=1)


def catalogue_fields(remembered: Remembered | None = None) -> dict[str, str]:
    """Every flattened field of the catalogue and its type, derived fields first.

    One index probe (max(indexed_at)) per call, or none more when the
    request's `remembered` totals read it anyway (their version holds it: a
    grid page filtered on a metadata field read it twice). When products were
    added or updated since the cached answer, only the rows indexed since then
    are read (the indexed_at index), so a grid request during a long indexing
    run does not scan the whole catalogue at every batch; the full scan runs
    once an hour at most. A removed product's fields stay until that full scan.
    """
    if remembered is not None:
        version = remembered.version()
        latest = version[0] if version else None
    else:
        latest = DataProduct.objects.aggregate(latest=Max("indexed_at"))["latest"]
    cached = cache.get(_FIELDS_CACHE_KEY)
    if cached is not None and cached["latest"] == latest:
        return cached["fields"]
    now = dt.datetime.now(dt.UTC)
    products = DataProduct.objects.order_by()  # the default ordering would defeat DISTINCT
    if (
        cached is not None
        and latest is not None
        and cached["latest"] is not None
        and cached["latest"] < latest
        and now - cached["full_at"] < _FULL_REFRESH
    ):
        seen, full_at = dict(cached["seen"]), cached["full_at"]
        products = products.filter(indexed_at__gte=cached["latest"] - _RECENT_MARGIN)
    else:
        seen, full_at = {}, now
    for types in products.values_list("field_types", flat=True).distinct():
        for name, kind in (types or {}).items():
            # A field with different types in different products is a string.
            seen[name] = kind if seen.get(name, kind) == kind else "string"
    fields = dict(DERIVED_FIELDS)
    for name in sorted(seen):
        fields.setdefault(name, seen[name])
    cache.set(
        _FIELDS_CACHE_KEY,
        {"latest": latest, "seen": seen, "fields": fields, "full_at": full_at},
        timeout=int(_FULL_REFRESH.total_seconds()),
    )
    return fields


# --- /filterdataproducts ------------------------------------------------------------

_STRING_OPERATORS = {
    "contains",
    "doesNotContain",
    "equals",
    "doesNotEqual",
    "startsWith",
    "endsWith",
    "isAnyOf",
}
_NUMBER_OPERATORS = {"=": "exact", "!=": "exact", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}
# Date operators on date_created; legacy greaterThan/lessThan are inclusive (3.2).
_DATE_OPERATORS = {
    "is": "exact",
    "equals": "exact",
    "after": "gt",
    "onOrAfter": "gte",
    "greaterThan": "gte",
    "before": "lt",
    "onOrBefore": "lte",
    "lessThan": "lte",
}
_VALUELESS = {"isEmpty", "isNotEmpty"}


class JSONTypeOf(Func):
    """The JSON type of a document value: jsonb_typeof (PostgreSQL), typeof (SQLite)."""

    function = "jsonb_typeof"
    output_field = CharField()

    def as_sqlite(self, compiler, connection, **extra_context):
        return super().as_sql(compiler, connection, function="typeof", **extra_context)


_NUMBER_TYPES = ["number", "integer", "real"]


# The uids of the products whose annotations contain a text (a QuerySet of one
# column): the "annotation" filter field, answered by the annotations app, which
# the caller passes in (dpd depends on no feature app).
AnnotatedUids = Callable[[str], QuerySet]


@dataclass
class _FilterBuilder:
    """Turns filter items into Q objects; number comparisons need aliases."""

    aliases: dict[str, Any]
    annotated_uids: AnnotatedUids | None = None
    remembered: Remembered | None = None

    @cached_property
    def fields(self) -> dict[str, str]:
        """The field catalogue, read only for a field that needs it: filters
        and sorts on the columns every product has (the dashboard's usual
        request) skip its index probe."""
        return catalogue_fields(self.remembered)

    def item_q(self, item: Any) -> Q | None:
        """The condition of one item, or None when it is to be ignored (unknown
        field or operator, missing value: reference 3.5, 3.6)."""
        if not isinstance(item, dict):
            return None
        field, operator, value = item.get("field"), item.get("operator"), item.get("value")
        if field == "formFields":
            return self._form_fields_q(item.get("keyPairs"))
        if not isinstance(field, str) or not isinstance(operator, str):
            return None
        if operator not in _VALUELESS and value in (None, "", []):
            return None
        if field == "metadata_store_name":
            return self._store_name_q(operator, value)
        if field == "annotation":
            return self._annotation_q(operator, value)
        if field == "date_created":
            return self._date_q(operator, value)
        if field != "execution_block" and field not in self.fields:
            return None  # execution_block: every product has one (a string)
        if operator in _NUMBER_OPERATORS:
            return self._number_q(field, operator, value)
        if operator in _VALUELESS:
            present = Q(field_values__has_any=[search_text.present_value(field)])
            return ~present if operator == "isEmpty" else present
        if operator in _STRING_OPERATORS:
            return self._string_q(field, operator, value)
        return None

    def _string_q(self, field: str, operator: str, value: Any) -> Q | None:
        """Case-insensitive, like MUI's client-side filters (reference 3.6 [rec])."""
        if operator == "isAnyOf":
            # One condition whatever the number of values (bounded by the
            # request serializer): one array on the execution_block column,
            # one regular expression on the search text.
            values = any_of_values(value)
            if not values:
                return None
            if field == "execution_block":
                return Q(execution_block_folded__any_of=[search_text.clean(v) for v in values])
            return _equals_q(field, values)
        if isinstance(value, dict | list):
            return None
        text = str(value)
        positive = {"doesNotContain": "contains", "doesNotEqual": "equals"}.get(operator, operator)
        if field == "execution_block":
            q = self._execution_block_q(positive, text)
        elif positive == "equals":
            q = _equals_q(field, [text])
        else:
            q = Q(search_text__iregex=search_text.field_pattern(field, positive, [text]))
        # The negations also match rows where the field is missing.
        return ~q if positive != operator else q

    def _execution_block_q(self, operator: str, text: str) -> Q:
        """The same test on execution_block's folded column (every product has
        one, with the text its row field holds), through its own trigram index."""
        return Q(execution_block_folded__like=search_text.like_pattern(operator, text))

    def _number_q(self, field: str, operator: str, value: Any) -> Q | None:
        number = _as_number(value)
        if number is None:
            return None
        n = len(self.aliases)
        value_alias, type_alias = f"_filter_value_{n}", f"_filter_type_{n}"
        expression = document_value(field)
        self.aliases[value_alias] = expression
        # A missing field has no type: "missing" keeps NOT(...) true for it ("!=").
        self.aliases[type_alias] = Coalesce(JSONTypeOf(document_value(field)), Value("missing"))
        q = Q(**{f"{type_alias}__in": _NUMBER_TYPES}) & Q(
            **{f"{value_alias}__{_NUMBER_OPERATORS[operator]}": number}
        )
        return ~q if operator == "!=" else q

    def _date_q(self, operator: str, value: Any) -> Q | None:
        if operator == "isEmpty":
            return NO_PRODUCT  # every product has a date
        if operator == "isNotEmpty":
            return EVERY_PRODUCT
        if operator == "not":
            day = parse_date(value) if isinstance(value, str) else None
            return None if day is None else ~Q(date_created=day)
        lookup = _DATE_OPERATORS.get(operator)
        day = parse_date(value) if isinstance(value, str) else None
        if lookup is None or day is None:
            return None
        return Q(**{f"date_created__{lookup}": day})

    def _store_name_q(self, operator: str, value: Any) -> Q | None:
        """Catalogued products live in the volume's store (PVCNAME), SDP
        placeholder rows in "SDP": the test is decided per store name."""
        values = value if isinstance(value, list) else str(value).split(",")
        values = [str(v).strip().lower() for v in values]
        text = str(value).lower()
        placeholder = Q(source=DataProduct.Source.SDP)
        dlm = Q(source__in=DLM_SOURCES)
        stores = (
            (settings.PVCNAME.lower(), ~placeholder & ~dlm),
            ("sdp", placeholder),
            (DLM_STORE_NAME.lower(), dlm),
        )
        negated = {"doesNotEqual": "equals", "doesNotContain": "contains", "isEmpty": "isNotEmpty"}
        positive = negated.get(operator, operator)
        matching = []
        for name, rows in stores:
            tests = {
                "equals": name == text,
                "is": name == text,
                "contains": text in name,
                "startsWith": name.startswith(text),
                "endsWith": name.endswith(text),
                "isAnyOf": name in values,
                "isNotEmpty": True,
            }
            if positive not in tests:
                return None
            if tests[positive] != (positive != operator):
                matching.append(rows)
        if len(matching) == len(stores):
            return EVERY_PRODUCT
        return matching[0] if matching else NO_PRODUCT

    def _annotation_q(self, operator: str, value: Any) -> Q | None:
        """Products with an annotation containing the text, case-insensitively
        (reference 3.6; broken upstream, 8.2 #16)."""
        if operator != "contains" or not isinstance(value, str) or self.annotated_uids is None:
            return None
        return Q(uid__in=self.annotated_uids(value))

    def _form_fields_q(self, key_pairs: Any) -> Q | None:
        """The legacy search form: each {keyPair, valuePair} is a key:value pair."""
        if not isinstance(key_pairs, list):
            return None
        q = None
        for pair in key_pairs:
            if isinstance(pair, dict) and isinstance(pair.get("keyPair"), str):
                value = pair.get("valuePair")
                pair_q = key_value_q(pair["keyPair"], "" if value is None else str(value))
                q = pair_q if q is None else q & pair_q
        return q  # None without a usable pair: an item with nothing to apply


def _equals_q(field: str, values: list[str]) -> Q:
    """The row field named `field` equal to one of `values`, both folded: an
    element of the product's field values (DataProduct.field_values), which
    the GIN index finds exactly. A regular expression on the search text
    rechecked every trigram candidate instead, ~14 us each: seconds for a
    value half of 1,000,000 products hold (docs/benchmarks.md)."""
    return Q(field_values__has_any=[search_text.field_value(field, v) for v in values])


def any_of_values(value: Any) -> list[str]:
    """The values of an isAnyOf item as the filter compares them: a list's
    elements, or a string's comma-separated parts, each as text, stripped;
    null and "" elements left out. [] when the value holds none."""
    values = value.split(",") if isinstance(value, str) else value
    if not isinstance(values, list):
        return []
    return [str(v).strip() for v in values if v not in (None, "")]


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def filter_products(
    products: QuerySet[DataProduct],
    *,
    filter_items: list[Any],
    logic_operator: str,
    panel_items: list[Any],
    sort_model: list[Any],
    annotated_uids: AnnotatedUids | None = None,
    remembered: Remembered | None = None,
) -> QuerySet[DataProduct]:
    """The grid's rows: filterModel items combined with its logicOperator, ANDed
    with the search-panel items, sorted (reference 3.5, 3.6 [rec]). Without
    `annotated_uids`, "annotation" items are ignored like any unknown field.
    `remembered`: the request's totals, whose version tells the field
    catalogue whether it is current (catalogue_fields)."""
    builder = _FilterBuilder(aliases={}, annotated_uids=annotated_uids, remembered=remembered)
    grid_conditions = [q for q in map(builder.item_q, filter_items) if q is not None]
    panel_conditions = [q for q in map(builder.item_q, panel_items) if q is not None]
    combined = Q()
    if grid_conditions:
        grid = grid_conditions[0]
        for q in grid_conditions[1:]:
            grid = grid | q if logic_operator == "or" else grid & q
        combined &= grid
    for q in panel_conditions:
        combined &= q
    if builder.aliases:
        products = products.alias(**builder.aliases)
    return sort_products(products.filter(combined), sort_model, lambda: builder.fields)


def sort_products(
    products: QuerySet[DataProduct],
    sort_model: list[Any],
    fields: Callable[[], dict[str, str]],
) -> QuerySet[DataProduct]:
    """The first usable sortModel entry, missing values last, then a
    deterministic tie-break (a column's: the display order; a document
    field's: dpd/search_sort.py); no usable entry gives the display order."""
    for entry in sort_model:
        if not isinstance(entry, dict):
            continue
        field, direction = entry.get("field"), entry.get("sort")
        if direction not in ("asc", "desc") or not isinstance(field, str):
            continue
        descending = direction == "desc"
        if field == "date_created":
            # Never NULL: no NULLS LAST, which would keep PostgreSQL from
            # reading dpd_display_order in order (the dashboard's default
            # sort: a sort of every visible product, 40 ms at 100,000).
            if descending:
                return products.in_display_order()
            return products.order_by("date_created", "metadata_file", "uid")
        if field in _COLUMN_FIELDS:
            order = F(field).desc(nulls_last=True) if descending else F(field).asc(nulls_last=True)
            return products.order_by(order, "-date_created", "metadata_file", "uid")
        if field in fields():
            return products.order_by(*search_sort.sort_order(field, descending=descending))
    return products.in_display_order()


def grid_columns() -> list[dict[str, Any]]:
    """The grid config (reference 2.5 [rec]): the nine fixed columns, visible,
    then every other catalogue field, hidden, in name order; MUI types."""
    fields = catalogue_fields()
    columns = [
        _column(name, header, width, fields.get(name, "string"), hide=False)
        for name, header, width in FIXED_COLUMNS
    ]
    fixed = {name for name, _, _ in FIXED_COLUMNS}
    columns.extend(
        _column(name, name, 150, kind, hide=True)
        for name, kind in sorted(fields.items())
        if name not in fixed
    )
    columns.append(
        {
            "field": "id",
            "headerName": "id",
            "width": 80,
            "hide": True,
            "type": "number",
            "filterable": False,
        }
    )
    return columns


def _column(field: str, header: str, width: int, kind: str, *, hide: bool) -> dict[str, Any]:
    mui_type = {"date": "date", "number": "number", "boolean": "boolean"}.get(kind, "string")
    return {
        "field": field,
        "headerName": header,
        "width": width,
        "hide": hide,
        "type": mui_type,
        "filterable": kind != "list" and field != "uid",
    }


def execute_with(cursor: Any, setting: str, value: str, statements: str, params: Any) -> None:
    """Run `statements` with a planner setting for them alone, in one round
    trip, the cursor left on the first statement's result.

    PostgreSQL runs the statements of one simple query in one transaction, so
    the setting sent with them ends with them; within a caller's transaction
    it is reset at their end instead of outliving them. psycopg's client-side
    binding (Django's default; settings refuses the other) sends statements
    with their parameters as a simple query.
    """
    cursor.execute(
        f"SET LOCAL {setting} TO {value}; {statements}; SET LOCAL {setting} TO DEFAULT", params
    )
    cursor.nextset()  # past SET
