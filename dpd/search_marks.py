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

import threading
import time
from collections.abc import Sequence
from typing import Any

from django.db import connections
from django.db.models import Expression, F, JSONField, OrderBy, QuerySet, TextField, Value
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
    mark = marks.nearest(offset)
    if mark is None:
        first, read = offset, time.time()
        part = _with_values(products, order)[offset : offset + limit]
        rows = _read(*_union([part], limit), products.db)
    else:
        first, values, read = mark
        needed = offset - first + limit
        sql, params = _read_on(products, order, marks.key, values, needed)
        rows = _read(
            sql, [values[p.index] if isinstance(p, _Slot) else p for p in params], products.db
        )[offset - first :]
    rows = rows[:limit]
    if rows:
        marks.add({offset: rows[0][2:], offset + len(rows) - 1: rows[-1][2:]}, read)
    return [(pk, text) for pk, text, *_ in rows]


# Statements that read on from a mark, compiled (_read_on); at most this many.
COMPILED_KEPT = 256
_compiled: dict[tuple, tuple[str, list]] = {}
_compiled_lock = threading.Lock()


def _read_on(
    products: QuerySet[DataProduct],
    order: list[Term],
    key: str,
    values: Sequence[Any],
    needed: int,
) -> tuple[str, list]:
    """The statement reading `needed` rows on from the mark with these order
    values: its SQL, and its parameters with a _Slot for each of the mark's
    values. Compiled by the ORM once per statement of `products` (`key`),
    number of rows and kind of each value: building and compiling its parts
    was ~1.4 ms of a ~9.5 ms grid page sorted on a visible column at
    1,000,000 products, for SQL that differs only in the mark's values."""
    shape = (key, needed, tuple(type(value) for value in values))
    compiled = _compiled.get(shape)
    if compiled is None:
        named = _with_values(products, order)
        slots = [
            None if value is None else _Slot(index, Value(value)._resolve_output_field())
            for index, value in enumerate(values)
        ]
        parts = [named.filter(*part)[:needed] for part in _at_or_after(order, slots)]
        compiled = _union(parts, needed)
        with _compiled_lock:
            if len(_compiled) >= COMPILED_KEPT:
                del _compiled[next(iter(_compiled))]  # the oldest
            _compiled[shape] = compiled
    return compiled


class _Slot(Expression):
    """Stands for the mark's value of term `index` in a compiled statement:
    its placeholder's parameter until page() puts the value there. The
    value goes to the driver as it is, as Value() would send it to
    PostgreSQL (a str, an int, an aware datetime)."""

    def __init__(self, index: int, output_field: Any) -> None:
        super().__init__(output_field)
        self.index = index

    def as_sql(self, compiler, connection):
        return "%s", [self]


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


def _as_parameter(term: Term, value: _Slot) -> Any:
    if _is_json(term):
        return Cast(value, output_field=JSONField())  # its text, as jsonb
    return value


def _is_json(term: Term) -> bool:
    """Whether the term's values are JSON (a sort key): read as text, sent
    back as jsonb. A column name (F) declares no type of its own."""
    return isinstance(getattr(term[0], "output_field", None), JSONField)


def _union(parts: list[QuerySet], needed: int) -> tuple[str, list]:
    """One statement of the rows of the parts in turn, up to `needed`: it
    stops as soon as it has them (a request's statements are bounded,
    docs/api.md), so a later part, whose range may hold few matches and walk
    far, runs only when the earlier ones fall short.

    UNION ALL runs its parts one after the other, each in its own order;
    only a parallel plan could interleave them, so there is none (_read).
    """
    statements, params = [], []
    for part in parts:
        sql, part_params = part.query.sql_with_params()
        statements.append(f"({sql})")
        params.extend(part_params)
    union = " UNION ALL ".join(statements)
    return f"SELECT * FROM ({union}) AS dpd_parts LIMIT %s", [*params, needed]


def _read(sql: str, params: list, alias: str) -> list[tuple]:
    with connections[alias].cursor() as cursor:
        search.execute_with(cursor, "max_parallel_workers_per_gather", "0", sql, params)
        return cursor.fetchall()
