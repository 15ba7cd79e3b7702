"""Pages far into an index's order, read on from a row an earlier page showed.

A grid page far from the start, in an order an index gives (a visible column
of the grid, dpd/search_sort.py, or the display order), walks that index from
its first entry and tests the filter on every row it passes: at 1,000,000
products, equals `SKA-Mid` sorted on `context.observer`, page 200 of 25,
walks 10,055 entries and their rows for 25 rows (190 ms), and 16 clients
asking it waited 6 s at p99.

So each such page keeps where it was: its first and last rows' order values,
with their positions (dpd.remembered_counts.PageMarks: per statement, while
the catalogue is unchanged, for at most MARK_SECONDS). A later page of the same
statement at or after a mark starts from that row: the rows from there on
are those whose order values come at or after the mark's, which the index
finds by seeking. Asking a page again reads its rows; the next page reads
one row more than its own. A first page is read from the start and marks
nothing (dpd.search_rows.counted_page).

"At or after" in an order of mixed directions (the sort key ascending, the
date descending, the id ascending) is no single row comparison an index can
seek, so it is asked in parts, each a seek on a prefix of equal values and
one range, read in order until the page is full (one statement): for the
mark (k, d, i), `key = k AND date = d AND id >= i`, then `key = k AND date
< d`, then `key > k`, then `key IS NULL` (missing values sort last).

On PostgreSQL only, in the index orders search_rows names; SQLite walks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from django.db import connections
from django.db.models import F, JSONField, OrderBy, QuerySet, TextField, Value
from django.db.models.functions import Cast
from django.db.models.lookups import (
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    IsNull,
    LessThan,
    LessThanOrEqual,
)

from dpd import search
from dpd.models import DataProduct
from dpd.remembered_counts import PageMarks

# One term of an order: (expression, descending, whether NULL can occur:
# it sorts last).
Term = tuple[Any, bool, bool]


def page(
    products: QuerySet[DataProduct], offset: int, limit: int, marks: PageMarks
) -> list[tuple[int, str | None]]:
    """(id, row_json) of the page at `offset` of `products` (in an index's
    order), read on from the nearest mark before it when there is one; its
    first and last rows are marked for the next pages."""
    order = _terms(products)
    named = _with_values(products, order)
    mark = marks.nearest(offset)
    if mark is None:
        first, read = offset, time.time()
        rows = _read([named[offset : offset + limit]], limit, products.db)
    else:
        first, values, read = mark
        needed = offset - first + limit
        parts = [named.filter(*part)[:needed] for part in _at_or_after(order, values)]
        rows = _read(parts, needed, products.db)[offset - first :]
    rows = rows[:limit]
    if rows:
        marks.add({offset: rows[0][2:], offset + len(rows) - 1: rows[-1][2:]}, read)
    return [(pk, text) for pk, text, *_ in rows]


def _terms(products: QuerySet[DataProduct]) -> list[Term]:
    """The queryset's ORDER BY as terms; a name is a column that is never
    NULL (the index orders' columns)."""
    terms: list[Term] = []
    for item in products.query.order_by:
        if isinstance(item, str):
            terms.append((F(item.lstrip("-")), item.startswith("-"), False))
        elif isinstance(item, OrderBy):
            terms.append((item.expression, item.descending, bool(item.nulls_last)))
        else:
            raise TypeError(f"not an order an index gives: {item!r}")
    return terms


def _value_name(index: int) -> str:
    return f"dpd_mark_{index}"


def _with_values(products: QuerySet[DataProduct], order: list[Term]) -> QuerySet:
    """(id, row_json, each term's value) in the queryset's order; a JSON value
    as its text, which comes back exactly (a float would not)."""
    named = products.annotate(
        **{
            _value_name(i): Cast(term[0], output_field=TextField()) if _is_json(term) else term[0]
            for i, term in enumerate(order)
        }
    )
    return named.values_list("pk", "row_json", *map(_value_name, range(len(order))))


def _at_or_after(order: list[Term], values: Sequence[Any]) -> list[list[Any]]:
    """The conditions of the parts, in order, that hold the rows at or after
    the row with these order values (the last term is unique)."""
    parts = []
    for level in reversed(range(len(order))):
        prefix = [_equal(order[i], values[i]) for i in range(level)]
        expression, descending, nullable = order[level]
        value, last = values[level], level == len(order) - 1
        if value is None:  # only NULL comes at or after NULL
            if last:
                parts.append([*prefix, IsNull(expression, True)])
            continue
        if last:
            beyond = LessThanOrEqual if descending else GreaterThanOrEqual
        else:
            beyond = LessThan if descending else GreaterThan
        parts.append([*prefix, beyond(expression, _as_parameter(order[level], value))])
        if nullable:
            parts.append([*prefix, IsNull(expression, True)])
    return parts


def _equal(term: Term, value: Any) -> Any:
    expression = term[0]
    if value is None:
        return IsNull(expression, True)
    return Exact(expression, _as_parameter(term, value))


def _as_parameter(term: Term, value: Any) -> Any:
    if _is_json(term):
        return Cast(Value(value), output_field=JSONField())  # its text, as jsonb
    return Value(value)


def _is_json(term: Term) -> bool:
    """Whether the term's values are JSON (a sort key): read as text, sent
    back as jsonb. A column name (F) declares no type of its own."""
    return isinstance(getattr(term[0], "output_field", None), JSONField)


def _read(parts: list[QuerySet], needed: int, alias: str) -> list[tuple]:
    """The rows of the parts in turn, up to `needed`: one statement (a
    request's statements are bounded, docs/api.md) that stops as soon as it
    has them, so a later part, whose range may hold few matches and walk
    far, runs only when the earlier ones fall short.

    UNION ALL runs its parts one after the other, each in its own order;
    only a parallel plan could interleave them, so there is none.
    """
    statements, params = [], []
    for part in parts:
        sql, part_params = part.query.sql_with_params()
        statements.append(f"({sql})")
        params.extend(part_params)
    union = " UNION ALL ".join(statements)
    with connections[alias].cursor() as cursor:
        search.execute_with(
            cursor,
            "max_parallel_workers_per_gather",
            "0",
            f"SELECT * FROM ({union}) AS dpd_parts LIMIT %s",
            [*params, needed],
        )
        return cursor.fetchall()
