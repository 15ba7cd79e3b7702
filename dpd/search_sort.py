"""The grid's sort on a document field, and the indexes that serve it.

A sort on a document field reads that field from every visible product's
document before the first row: 2.9 s for page 0 at 1,000,000 products,
each document decompressed from TOAST for one value. The grid's visible
columns from the document (`INDEXED`, the fixed columns of reference 2.5)
are what users click, so each has two B-tree indexes, ascending and
descending (missing values come last either way: one index read backwards
would put them first), whose order is the sort's whole ORDER BY: a page walks one
index and stops after it (page 0 at 1,000,000 products: 2.99 -> 0.11 s,
most of it the total; its first 1,001 rows 20 ms).

The key is `dpd_sort_key(value)` (migration 0015): the JSON value itself,
so that strings, numbers and the rest keep jsonb's order, with a JSON null
as no value (sorted last, with the missing ones, reference 4.6). A value
whose text is over SORT_KEY_MAX_BYTES bytes, which could not fit in a B-tree
entry (~2.7 KB) and would make its product impossible to write, is keyed by
its first SORT_KEY_PREFIX_CHARS characters (as a JSON string): values that
long and alike up to there keep the tie-break's order among themselves.
Other fields sort by the value as it is, without an index.

Ties: newest first, then the row id (insertion order), which the indexes
hold; the display order's tie-break (metadata_file, uid) would make each
index twice as large for the same determinism.
"""

from __future__ import annotations

from typing import Any

from django.db.models import F, Func, Index, JSONField, OrderBy, Value
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Cast, NullIf

# The document fields among the grid's fixed columns, and the short name of
# their indexes (Django limits index names to 30 characters).
INDEXED = {
    "config.processing_block": "pb",
    "config.processing_script": "script",
    "context.observer": "observer",
    "context.intent": "intent",
    "context.notes": "notes",
}
# dpd_sort_key's bounds (kept in step with migration 0015's function body).
SORT_KEY_MAX_BYTES = 1000
SORT_KEY_PREFIX_CHARS = 250
TIE_BREAK = (F("date_created").desc(), F("id").asc())


def document_value(field: str) -> KeyTransform:
    """The document value at a dotted field name; each part is a JSON key
    (a query parameter), never an ORM lookup."""
    expression: Any = "metadata"
    for part in field.split("."):
        expression = KeyTransform(part, expression)
    return expression


class SortKey(Func):
    """An indexed field's sort key: `dpd_sort_key(<value>)` on PostgreSQL,
    the value with JSON null as NULL elsewhere (no index there; SQLite has
    no jsonb order to match either)."""

    function = "dpd_sort_key"
    output_field = JSONField()

    def __init__(self, field: str) -> None:
        super().__init__(_value(field))

    def as_sql(self, compiler, connection, **extra_context):
        (value,) = self.get_source_expressions()
        return compiler.compile(value)

    def as_postgresql(self, compiler, connection, **extra_context):
        # dpd_sort_key takes JSON null for no value itself: its argument is
        # the document value, which NULLIF wraps elsewhere.
        (value,) = self.get_source_expressions()
        sql, params = compiler.compile(value.get_source_expressions()[0])
        return f"{self.function}({sql})", params


def sort_order(field: str, *, descending: bool) -> tuple[OrderBy, ...]:
    """The ORDER BY of a sort on a document field: missing values last."""
    key = SortKey(field) if field in INDEXED else _value(field)
    return (OrderBy(key, descending=descending, nulls_last=True), *TIE_BREAK)


def indexed_orders() -> set[tuple[OrderBy, ...]]:
    """The sort orders that an index holds as they are."""
    return {sort_order(field, descending=d) for field in INDEXED for d in (False, True)}


def sort_indexes() -> list[Index]:
    """DataProduct's sort indexes (PostgreSQL only: migration 0015)."""
    return [
        Index(*sort_order(field, descending=d), name=f"dpd_sort_{short}_{'desc' if d else 'asc'}")
        for field, short in INDEXED.items()
        for d in (False, True)
    ]


def without_statistics(index_name: str) -> str:
    """SQL that keeps ANALYZE from sampling a sort index's key: the planner
    needs no statistics to walk an index in order, and computing the keys of
    the ten indexes for ANALYZE's sample rows (each document read again)
    tripled its time (24,000 products: 0.74 -> 2.4 s, after every first
    load and at each autovacuum analyze)."""
    return f'ALTER INDEX "{index_name}" ALTER COLUMN 1 SET STATISTICS 0'


def _value(field: str) -> NullIf:
    # A JSON null is no value (its row leaves the field out, reference 4.6).
    return NullIf(document_value(field), Cast(Value("null"), JSONField()))
