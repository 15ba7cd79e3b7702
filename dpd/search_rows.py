"""Pages of search and filter results: which rows, and how they are written.

Two ways to write a page:
- `page_rows`: flattened rows as dicts, for the renderers that need them
  (CSV, TSV, the browsable API);
- `page_texts`: each row's JSON object text, spliced from the stored
  `row_json` (DataProduct.row_json) with the fields that depend on settings or
  on the request (`metadata_store_name`, `id`). The JSON answer is built from
  these texts: no document is decoded, flattened or encoded per request,
  which was most of a date-range search's time (~12 ms per 100 rows).

And one way to find a key:value page faster (`window_rows`, PostgreSQL): the
trigram index narrows a pair with common values to thousands of candidates,
each rechecked against its search text before the newest can be picked; the
newest matches are usually among the newest products, so the first
SEARCH_WINDOW_ROWS products in display order are tried first, ruled out by
their search signature where they can be (dpd.search_text). When they hold
the whole page, it is the page (they are a prefix of the display order);
otherwise the caller runs the full query.

The statements whose text depends only on which date bounds a search has
and what it hides (the window, whether more candidates follow it, and the
plain list of a date range without pairs: `range_page_texts`) are compiled
by the ORM once per process and shape, with the dates as parameters.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connections, transaction
from django.db.models import QuerySet
from django.db.models.sql.where import AND, WhereNode

from dpd import search, search_marks, search_pieces, search_sort, search_text
from dpd.models import (
    DLM_ROW_START,
    DLM_STORE_NAME,
    PLACEHOLDER_ROW_START,
    SDP_STORE_NAME,
    DataProduct,
    row_json_text,
)
from dpd.remembered_counts import Remembered

# What counts all matches of a queryset (QuerySet.count, or a remembered count).
Counter = Callable[[QuerySet[DataProduct]], int]

# The derived search columns are for the database, not for the rows.
_SEARCH_COLUMNS = (
    "search_text",
    "search_signature",
    "field_types",
    "field_values",
    "row_json",
    "execution_block_folded",
)


def page_rows(
    products: QuerySet[DataProduct], offset: int, limit: int, *, first: int | None = None
) -> list[dict[str, Any]]:
    """Flattened rows of one page; `id` is the 1-based position in the whole
    sorted result, so it is unique across pages (reference 4.5 [rec]):
    counted from `first` when the queryset holds only the page (default:
    from offset)."""
    rows = products.defer(*_SEARCH_COLUMNS)[offset : offset + limit]
    return _positioned(rows, offset if first is None else first)


def _positioned(products: Iterable[DataProduct], offset: int) -> list[dict[str, Any]]:
    """Each product's flattened row with its position, counted from offset."""
    rows = []
    for position, product in enumerate(products, start=offset + 1):
        row = product.flat_row()
        row["id"] = position
        rows.append(row)
    return rows


def page_texts(
    products: QuerySet[DataProduct], offset: int, limit: int, *, first: int | None = None
) -> list[str]:
    """The JSON text of each row of one page: what page_rows() gives, as the
    JSON renderer would write it (values equal; metadata_store_name and id
    come last)."""
    stored = list(products.values_list("pk", "row_json")[offset : offset + limit])
    return _spliced(stored, offset if first is None else first)


def window_page(found: list[tuple[int, str | None]], offset: int, *, as_text: bool) -> list[Any]:
    """The page of what window_rows() found, from `offset` on."""
    return _page_from(found[offset:], offset, as_text=as_text)


def _page_from(stored: list[tuple[int, str | None]], offset: int, *, as_text: bool) -> list[Any]:
    """Rows of a page read as (id, row_json), positions counted from offset:
    the JSON texts read along, or rows rendered from the products."""
    if as_text:
        return _spliced(stored, offset)
    ids = [pk for pk, _ in stored]
    by_pk = {p.pk: p for p in DataProduct.objects.filter(pk__in=ids).defer(*_SEARCH_COLUMNS)}
    return _positioned([by_pk[pk] for pk in ids], offset)


def _spliced(stored: list[tuple[int, str | None]], offset: int) -> list[str]:
    store = json.dumps(settings.PVCNAME, ensure_ascii=False)
    # Rows written before row_json existed are rendered from their documents.
    missing = {pk for pk, text in stored if not text}
    rendered = {}
    if missing:  # an empty filter still costs a queryset's construction
        rendered = {
            product.pk: row_json_text(
                {k: v for k, v in product.flat_row().items() if k != "metadata_store_name"}
            )
            for product in DataProduct.objects.filter(pk__in=missing)
        }
    # Placeholder rows (SDP work with no product yet) are the SDP store's,
    # DLM rows the DLM's; their stored text says so by how it starts.
    sdp, dlm = json.dumps(SDP_STORE_NAME), json.dumps(DLM_STORE_NAME)

    def store_of(text: str) -> str:
        if text.startswith(PLACEHOLDER_ROW_START):
            return sdp
        return dlm if text.startswith(DLM_ROW_START) else store

    return [
        f'{text[:-1]},"metadata_store_name":{store_of(text)},"id":{position}}}'
        for position, text in enumerate(
            (text or rendered[pk] for pk, text in stored), start=offset + 1
        )
    ]


def fetch_page(
    products: QuerySet[DataProduct],
    offset: int,
    limit: int,
    *,
    as_text: bool,
    first: int | None = None,
) -> list[Any]:
    if as_text:
        return page_texts(products, offset, limit, first=first)
    return page_rows(products, offset, limit, first=first)


def total(
    products: QuerySet[DataProduct],
    rows: list[Any],
    offset: int,
    limit: int,
    count: Counter | int = QuerySet.count,
) -> int:
    """The number of all matching products, given the page found at offset.

    A short page is the last one, so its total is known without counting.
    Otherwise `count` counts them, or is their count (a remembered count may
    lag a removal, yet the products already on the page still count).
    """
    if len(rows) < limit and (rows or offset == 0):
        return offset + len(rows)
    counted = count if isinstance(count, int) else count(products)
    return max(counted, offset + len(rows)) if rows else counted


# A page with its total starts from the first this many matches, in order.
COUNTED_IDS = 1000
_SEARCH_TEXT = DataProduct._meta.get_field("search_text")
# The orders an index gives (dpd_display_order, either way; the sort indexes).
_INDEX_ORDERS = {
    ("-date_created", "metadata_file", "uid"),
    ("date_created", "metadata_file", "uid"),
    *search_sort.indexed_orders(),
}


def counted_page(
    products: QuerySet[DataProduct],
    offset: int,
    limit: int,
    *,
    as_text: bool,
    remembered: Remembered | None = None,
) -> tuple[list[Any], int]:
    """A page and the number of all matching products (counted when the
    page's own reading does not, by `remembered` when given).

    The first COUNTED_IDS + 1 matches give the page and, when that is all of
    them, the total: a selective filter (a substring of execution_block, say)
    rechecks its candidates once, not a second time for COUNT(*). With more
    matches, they still hold the page, and only the total is counted. A page
    beyond them is read by itself, then the total: reading the first
    matches before it told only whether there were more, and took one of the
    few statements a request may run (docs/api.md, "Request bounds"). So is
    a first page whose total `remembered` knows: its first matches would
    tell nothing new (the grid's page 0 of 100 rows of a filter that half of
    1,000,000 products pass walked 1,001 matches, 29 ms a request).

    In any other order than an index's (a sort on a metadata field that
    dpd/search_sort.py does not index), every match is read and sorted
    before the first row. On PostgreSQL that is one plain query for the
    page, which parallel workers can share, and `count` apart (remembered,
    so paging on costs only the sort). It used to be one pass of a cursor
    that gave the total too, but PostgreSQL never runs a cursor's query in
    parallel: at 1,000,000 products, page 0 sorted on `obscore.t_exptime`
    3.0 -> 2.0 s; equals SKA-Mid sorted so, page 200, 2.75 -> 2.05 s the
    first time, 1.5 s on. (At 100,000 products the sort runs in one process
    either way, and the first such page pays its count: 0.26 -> 0.32 s.)
    With `remembered`, the ids of every match in that order are read once
    instead (Remembered.order), and each
    page is read by its ids (sorted again, 25 rows) with the order's length
    as its total: paging on costs ~10 ms, not the sort.
    In the index's order the count stays apart too: an index-only COUNT(*)
    is cheaper than walking the rest of the index to the heap (an
    unfiltered page 200: 25 ms, against 71 ms in one pass). With
    `remembered`, a page past the first matches is read on from where an
    earlier page of the same statement was (dpd.search_marks).

    A test of the search text that every match must pass is the exception,
    in any order: each candidate the trigram index gives is rechecked
    against its text, and the planner, which cannot tell how many match,
    reads them all before the first row anyway. Taking the first matches,
    then counting, rechecked them twice (a grid filter matching 250,000 of
    1,000,000 products: 8.5 s for the first 1,001, then 8.5 s for COUNT(*);
    one pass 8.8 s). Not for a negated test: a LIMIT walks the display order
    there, and the COUNT(*) apart can use parallel workers, which a cursor
    cannot (its negation at 1,000,000: 3.9 s, against 11.5 s in one pass).
    """
    count: Counter = QuerySet.count if remembered is None else remembered.count
    postgresql = connections[products.db].vendor == "postgresql"
    if postgresql and _requires_search_text(products.query.where):
        stored, counted = _cursor_page(products, offset, limit)
        return _page_from(stored, offset, as_text=as_text), counted
    unindexed = postgresql and tuple(products.query.order_by) not in _INDEX_ORDERS
    if unindexed and remembered is not None:
        ids = remembered.order(products)
        on_page = products.filter(pk__in=list(ids[offset : offset + limit]))  # sorted again
        return fetch_page(on_page, 0, limit, as_text=as_text, first=offset), len(ids)
    known = None if unindexed or remembered is None else remembered.known_count(products)
    if unindexed or known is not None or offset + limit > COUNTED_IDS + 1:
        # A first page has nothing to read on from, and its own read is the
        # cheapest (grid_equals at 1,000,000 products, in-process: the marks'
        # statements and parts were ~1 ms of its ~10 ms, compiling SQL).
        marked = not unindexed and remembered is not None and offset > 0
        marks = remembered.marks(products) if marked else None
        if postgresql and marks is not None:
            stored = search_marks.page(products, offset, limit, marks)
            rows = _page_from(stored, offset, as_text=as_text)
        else:
            rows = fetch_page(products, offset, limit, as_text=as_text)
        return rows, total(products, rows, offset, limit, count if known is None else known)
    stored, counted = _cursor_page(products[: COUNTED_IDS + 1], offset, limit)
    rows = _page_from(stored, offset, as_text=as_text)
    if counted <= COUNTED_IDS:
        return rows, counted
    return rows, total(products, rows, offset, limit, count)


def _requires_search_text(where: WhereNode) -> bool:
    """Whether every match must pass a test of the search text (a condition
    not negated, not one side of an OR): the planner then expects a few
    matches and reads every candidate whatever the LIMIT. A negated test is
    expected to pass nearly every product, and a LIMIT walks the index."""
    if where.negated or where.connector != AND:
        return False
    for child in where.children:
        if isinstance(child, WhereNode):
            if _requires_search_text(child):
                return True
        elif getattr(getattr(child, "lhs", None), "target", None) == _SEARCH_TEXT:
            return True
    return False


def _cursor_page(
    products: QuerySet[DataProduct], offset: int, limit: int
) -> tuple[list[tuple[int, str | None]], int]:
    """(id, row_json) of the page, and how many matches `products` has.

    On PostgreSQL one statement does both: a cursor over the matches skips to
    the page, reads it and counts the rest without reading their texts (one
    round trip and one compiled query where the ids and then the page's rows
    took two: the grid's paged filter at 100,000 products, 4.8 -> 4.0 ms).
    The cursor lives in the simple query's transaction, planned as a query
    whose every row is read (cursor_tuple_fraction), as the count needs.
    """
    connection = connections[products.db]
    if connection.vendor != "postgresql":
        # One statement there too (a request's statements are bounded): every
        # match's text comes along, which is cheap at the embedded default's
        # size and for the first COUNTED_IDS + 1 matches it is asked for.
        stored = list(products.values_list("pk", "row_json"))
        return stored[offset : offset + limit], len(stored)
    try:
        sql, params = products.values_list("pk", "row_json").query.sql_with_params()
    except EmptyResultSet:  # a filter that no product can pass (Django runs no query)
        return [], 0
    statements = (
        f"DECLARE dpd_page NO SCROLL CURSOR FOR {sql}; "
        f"MOVE {int(offset)} IN dpd_page; "
        f"FETCH {int(limit)} FROM dpd_page; "
        "MOVE ALL IN dpd_page; "
        "CLOSE dpd_page"
    )
    with connection.cursor() as cursor:
        search.execute_with(cursor, "cursor_tuple_fraction", "1", statements, params)
        cursor.nextset()  # past DECLARE
        skipped = cursor.rowcount
        cursor.nextset()
        page = cursor.fetchall()
        cursor.nextset()
        rest = cursor.rowcount
    return page, skipped + len(page) + rest


def window_rows(
    start_date: dt.date | None,
    end_date: dt.date | None,
    pairs: Sequence[tuple[str, str]],
    needed: int,
    *,
    placeholders: bool = True,
    hidden_sources: frozenset[str] = frozenset(),
) -> list[tuple[int, str | None]] | None:
    """(id, row_json) of the first `needed` open products dated start..end
    (search.open_candidates, in display order) that match every key:value
    pair, looking only at the first SEARCH_WINDOW_ROWS of them; fewer when the
    window held every candidate (a catalogue or date range smaller than the
    window, e.g. while a first index fills it: that is the whole answer); None
    when the window holds fewer than `needed` matches and more candidates
    follow it (then only the full query knows the answer), or when the
    pairs are too rare for the window to fill the page (the full query
    answers faster than a walk of the window): as the catalogue's sample
    shows (dpd.search_pieces.rare), or else its first read."""
    window = settings.SEARCH_WINDOW_ROWS
    connection = connections[DataProduct.objects.db]
    if connection.vendor != "postgresql" or window < needed or not pairs:
        return None
    if search_pieces.rare(pairs):
        return None
    bounds = [day for day in (start_date, end_date) if day is not None]
    hidden = tuple(sorted(hidden_sources))
    shape = (start_date is not None, end_date is not None, window, placeholders, hidden)
    rows = _matches_in(connection, shape, bounds, pairs, needed, window)
    if rows is None:
        return None
    if len(rows) == needed:
        return rows
    with connection.cursor() as cursor:
        cursor.execute(_beyond_statement(*shape[:2], placeholders, hidden), [*bounds, window])
        beyond = cursor.fetchone() is not None
    return None if beyond else rows


# Rows read beyond what the page still needs, for the ones the patterns reject.
_CHUNK_SLACK = 16
# Stands for a date bound while the window's statement is compiled.
_SOME_DAY = dt.date(2000, 1, 1)


@functools.lru_cache(maxsize=16)
def _window_statement(
    has_start: bool,
    has_end: bool,
    window: int,
    placeholders: bool,
    hidden: tuple[str, ...] = (),
    *,
    first: bool = True,
) -> str:
    """The window's SQL for a date range with these bounds: the products
    whose signature passes, in display order; its parameters are the bounds
    present, then the signature mask twice. The `first` read gives (id,
    search_text, row_json) of the first N (its last parameter); the other
    (id, search_text) of all, for a cursor.

    Built by the ORM once per process and shape: building and compiling the
    candidates' query was ~0.3 ms of every key:value search's ~2.7 ms in the
    worker, for a statement that differs only in its dates.

    The window is a subquery in FROM so that PostgreSQL walks the display-order
    index (asked as one query, its planner trusts the trigram index for any
    regex and rechecks thousands of candidates). Only products whose search
    signature holds every bucket of the pairs' bigrams leave the database
    (dpd.search_text.signature_mask: 100,000 products, two common pairs,
    17 -> ~2 ms of SQL).
    """
    candidates = _candidates(has_start, has_end, placeholders, hidden)
    part = candidates.values(
        "id", "search_text", "row_json", "search_signature", "date_created", "metadata_file", "uid"
    )[:window]
    sql = _dated_sql(part, has_start, has_end)
    bits = f"bit({search_text.SIGNATURE_BITS})"
    return (
        f"SELECT w.id, w.search_text{', w.row_json' if first else ''} FROM ({sql}) w "
        "WHERE w.search_signature IS NULL "
        f"OR (w.search_signature & %s::{bits}) = %s::{bits} "
        f"ORDER BY w.date_created DESC, w.metadata_file, w.uid{' LIMIT %s' if first else ''}"
    )


def range_page_texts(
    start_date: dt.date | None,
    end_date: dt.date | None,
    limit: int,
    *,
    placeholders: bool = True,
    hidden_sources: frozenset[str] = frozenset(),
) -> list[str]:
    """page_texts() of the first `limit` open products dated start..end (the
    plain list of a search without key:value pairs).

    On PostgreSQL from a statement compiled once per shape: building the
    candidates' queryset and compiling it was ~1 ms of a ~3.5 ms date-range
    search in the worker at 100,000 products, for a statement that differs
    only in its dates."""
    connection = connections[DataProduct.objects.db]
    if connection.vendor != "postgresql":
        candidates = search.open_candidates(
            start_date, end_date, placeholders=placeholders, hidden_sources=hidden_sources
        )
        return page_texts(candidates, 0, limit)
    bounds = [day for day in (start_date, end_date) if day is not None]
    hidden = tuple(sorted(hidden_sources))
    sql = _range_page_statement(start_date is not None, end_date is not None, placeholders, hidden)
    with connection.cursor() as cursor:
        cursor.execute(sql, [*bounds, limit])
        stored = cursor.fetchall()
    return _spliced(stored, 0)


@functools.lru_cache(maxsize=16)
def _range_page_statement(
    has_start: bool, has_end: bool, placeholders: bool, hidden: tuple[str, ...]
) -> str:
    """(id, row_json) of the candidates in display order; its parameters are
    the date bounds present, then the LIMIT."""
    candidates = _candidates(has_start, has_end, placeholders, hidden)
    sql = _dated_sql(candidates.values_list("pk", "row_json"), has_start, has_end)
    return f"{sql} LIMIT %s"


@functools.lru_cache(maxsize=16)
def _beyond_statement(
    has_start: bool, has_end: bool, placeholders: bool, hidden: tuple[str, ...]
) -> str:
    """A row when there are more candidates than its last parameter (after
    the date bounds present): whether the window held them all."""
    candidates = _candidates(has_start, has_end, placeholders, hidden).order_by()
    sql = _dated_sql(candidates.values_list("pk"), has_start, has_end)
    return f"{sql} LIMIT 1 OFFSET %s"


def _candidates(
    has_start: bool, has_end: bool, placeholders: bool, hidden: tuple[str, ...]
) -> QuerySet[DataProduct]:
    """search.open_candidates with _SOME_DAY for each bound present."""
    return search.open_candidates(
        _SOME_DAY if has_start else None,
        _SOME_DAY if has_end else None,
        placeholders=placeholders,
        hidden_sources=frozenset(hidden),
    )


def _dated_sql(candidates: QuerySet[DataProduct], has_start: bool, has_end: bool) -> str:
    """The SQL of a query of _candidates(), with a placeholder for each date
    bound present: its other parameters, the sources left out (the
    placeholders', the DLM's while hidden), are constants of ours, written
    into the statement."""
    sql, params = candidates.query.sql_with_params()
    constants = set(DataProduct.Source.values)
    dates = [p for p in params if p not in constants]
    if dates != [_SOME_DAY] * (has_start + has_end):
        raise AssertionError(f"the candidates' parameters are not their date bounds: {params!r}")
    if len(dates) != len(params):
        sql = sql % tuple("%s" if p == _SOME_DAY else f"'{p}'" for p in params)
    return sql


def _matches_in(
    connection: Any,
    shape: tuple[Any, ...],
    bounds: list[dt.date],
    pairs: Sequence[tuple[str, str]],
    limit: int,
    window: int,
) -> list[tuple[int, str | None]] | None:
    """(id, row_json) of the first `limit` matches in the window of `shape`
    (_window_statement's arguments), or None when the first read shows that
    the window is unlikely to hold them (the full query is then faster).

    Their search texts are tested with the pairs' patterns here, with
    Python's `re` (the patterns read the same in both), a few microseconds
    each against PostgreSQL's ~17. The first read takes a little more than
    the page, with the row texts: common pairs end there, in one round trip.
    When the patterns reject too many, a cursor walks the window from its
    start, in one snapshot, reading twice as many rows each time, only their
    search texts; the matches' row texts follow in one more query. Each text
    read is decompressed from its TOAST storage, which is most of a rare
    pair's cost: re-reading the window from its start at every doubling,
    with the row texts, decompressed ~2.6 times as many rows and twice the
    bytes (bench_scale rare_kv at 100,000 products: ~1,300 texts and rows
    for ~500 texts now; 70 -> 31 ms a search in-process).

    The walk must follow the display-order index and stop early, which the
    planner cannot see: below ~15,000 products its costs prefer reading and
    sorting every candidate (mid-way through a first index, 20 ms instead of
    2). Sorting is made a last resort for the reads' plans alone.

    A pair rare among the newest products (a few matches, or none, in the
    first read) would make the cursor walk the whole window and find too few
    anyway; when even one more match than the first read found, at its rate,
    over every row of the window, falls short of `limit`, the walk is
    skipped and the trigram index answers at once (bench_scale rare_kv at
    100,000 products: the walk was ~9 of its ~11 ms of SQL, the full query
    after it ~1 ms).
    """
    mask = search_text.signature_mask(pairs)
    patterns = [re.compile(search_text.key_value_pattern(key, value)) for key, value in pairs]
    read = limit + _CHUNK_SLACK
    with connection.cursor() as cursor:
        search.execute_with(
            cursor, "enable_sort", "off", _window_statement(*shape), [*bounds, mask, mask, read]
        )
        rows = cursor.fetchall()
    matches = [(pk, row) for pk, text, row in rows if all(p.search(text) for p in patterns)]
    if len(matches) >= limit or len(rows) < read:
        return matches[:limit]
    if (len(matches) + 1) * window < limit * len(rows):
        return None
    found: list[int] = []
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        search.execute_with(
            cursor,
            "enable_sort",
            "off",
            f"DECLARE dpd_window NO SCROLL CURSOR FOR {_window_statement(*shape, first=False)}",
            [*bounds, mask, mask],
        )
        while len(found) < limit:
            read *= 2  # the patterns reject many: read faster
            cursor.execute(f"FETCH {int(read)} FROM dpd_window")
            rows = cursor.fetchall()
            found += [pk for pk, text in rows if all(p.search(text) for p in patterns)]
            if len(rows) < read:
                break
        cursor.execute("CLOSE dpd_window")
        found = found[:limit]
        texts = dict(DataProduct.objects.filter(pk__in=found).values_list("pk", "row_json"))
    # A product removed since the walk read it is left out.
    return [(pk, texts[pk]) for pk in found if pk in texts]
