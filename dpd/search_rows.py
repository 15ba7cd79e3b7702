"""Pages of search and filter results: which rows, and how they are written.

Two ways to write a page:
- `page_rows`: flattened rows as dicts, for the renderers that need them
  (CSV, TSV, the browsable API);
- `page_texts`: each row's JSON object text, spliced from the stored
  `row_json` (DataProduct.row_json) with the fields that depend on settings or
  on the request (`metadata_store_name`, `id`). The JSON answer is built from
  these texts: no document is decoded, flattened or encoded per request,
  which was most of a date-range search's time (~12 ms per 100 rows).

And one way to find a key:value page faster (`window_ids`, PostgreSQL): the
trigram index narrows a pair with common values to thousands of candidates,
each rechecked against its search text before the newest can be picked; the
newest matches are usually among the newest products, so the first
SEARCH_WINDOW_ROWS products in display order are tried first. When they hold
the whole page, it is the page (they are a prefix of the display order);
otherwise the caller runs the full query.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.models import Func, QuerySet, TextField

from dpd import search_text
from dpd.models import DataProduct, row_json_text

DISPLAY_ORDER = ("-date_created", "metadata_file", "uid")


def page_rows(products: QuerySet[DataProduct], offset: int, limit: int) -> list[dict[str, Any]]:
    """Flattened rows of one page; `id` is the 1-based position in the whole
    sorted result, so it is unique across pages (reference 4.5 [rec])."""
    rows = []
    # The derived search columns are for the database, not for the rows.
    products = products.defer("search_text", "field_types", "row_json")
    for position, product in enumerate(products[offset : offset + limit], start=offset + 1):
        row = product.flat_row()
        row["id"] = position
        rows.append(row)
    return rows


def page_texts(products: QuerySet[DataProduct], offset: int, limit: int) -> list[str]:
    """The JSON text of each row of one page: what page_rows() gives, as the
    JSON renderer would write it (values equal; metadata_store_name and id
    come last)."""
    stored = list(products.values_list("pk", "row_json")[offset : offset + limit])
    return _spliced(stored, offset)


def rows_by_ids(ids: Sequence[int], offset: int, *, as_text: bool) -> list[Any]:
    """Rows of the products `ids`, in that order, positions counted from offset."""
    if as_text:
        by_pk = dict(DataProduct.objects.filter(pk__in=ids).values_list("pk", "row_json"))
        return _spliced([(pk, by_pk[pk]) for pk in ids], offset)
    products = DataProduct.objects.filter(pk__in=ids).defer("search_text", "field_types")
    by_pk = {product.pk: product for product in products}
    rows = []
    for position, pk in enumerate(ids, start=offset + 1):
        row = by_pk[pk].flat_row()
        row["id"] = position
        rows.append(row)
    return rows


def _spliced(stored: list[tuple[int, str]], offset: int) -> list[str]:
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
    return [
        f'{(text or rendered[pk])[:-1]},"metadata_store_name":{store},"id":{position}}}'
        for position, (pk, text) in enumerate(stored, start=offset + 1)
    ]


def fetch_page(
    products: QuerySet[DataProduct], offset: int, limit: int, *, as_text: bool
) -> list[Any]:
    if as_text:
        return page_texts(products, offset, limit)
    return page_rows(products, offset, limit)


def total(products: QuerySet[DataProduct], rows: list[Any], offset: int, limit: int) -> int:
    """The number of all matching products, given the page found at offset.

    A short page is the last one, so its total is known without counting:
    a selective filter runs its (substring-matching) query once, not twice.
    """
    if len(rows) < limit and (rows or offset == 0):
        return offset + len(rows)
    return products.count()


# The window is first read for a tenth of its size; a pair that matches too
# few of those products to fill the page from the whole window goes straight
# to the full query (half the expected matches is the bar, for sampling noise).
_PROBE_FRACTION = 10
_PROBE_MARGIN = 2


def window_ids(
    candidates: QuerySet[DataProduct], pairs: Sequence[tuple[str, str]], needed: int
) -> list[int] | None:
    """The ids of the first `needed` products of `candidates` (in display
    order) that match every key:value pair, looking only at the first
    SEARCH_WINDOW_ROWS candidates; None when the window holds fewer than
    `needed` matches (then only the full query knows the answer).

    The window is read in two parts: the first tenth, then the rest, unless
    the first tenth already filled the page or matched so rarely that the
    whole window would not (then None at once: a rare value's full query is
    fast, and reading the whole window for it would cost more than the
    query). Either way the answer is exact; the probe only decides how fast.

    Each part is a query of its own (a subquery in FROM) so that PostgreSQL
    walks the display-order index: asked the same as one query, its planner
    trusts the trigram index for any regex and rechecks every candidate. The
    window decompresses each search text once (`|| ''`; every function
    reading a stored text would decompress it again), and a plain substring
    test of each value (it must occur in a matching text) runs before the
    regular expressions, in a CASE because the planner would otherwise order
    them by cost and run the expensive ones first (100,000 products: 30 -> 14 ms).
    """
    window = settings.SEARCH_WINDOW_ROWS
    connection = connections[candidates.db]
    if connection.vendor != "postgresql" or window < needed or not pairs:
        return None
    probe = max(1, window // _PROBE_FRACTION)
    ids = _matches_in(connection, candidates, pairs, 0, probe, needed)
    if len(ids) == needed:
        return ids
    if len(ids) * _PROBE_FRACTION * _PROBE_MARGIN < needed:
        return None
    ids += _matches_in(connection, candidates, pairs, probe, window, needed - len(ids))
    return ids if len(ids) == needed else None


def _matches_in(
    connection: Any,
    candidates: QuerySet[DataProduct],
    pairs: Sequence[tuple[str, str]],
    start: int,
    stop: int,
    limit: int,
) -> list[int]:
    """Ids of the first `limit` matches among candidates[start:stop], in display order."""
    part = (
        candidates.order_by(*DISPLAY_ORDER)
        .annotate(text=_Detoasted("search_text"))
        .values("id", "text", "date_created", "metadata_file", "uid")[start:stop]
    )
    sql, params = part.query.sql_with_params()
    values = [search_text.clean(value) for _, value in pairs if value]
    patterns = [search_text.key_value_pattern(key, value) for key, value in pairs]
    matches = " AND ".join(["w.text ~ %s"] * len(patterns))
    if values:
        substrings = " AND ".join(["strpos(w.text, %s) > 0"] * len(values))
        matches = f"CASE WHEN {substrings} THEN {matches} ELSE false END"
    query = (
        f"SELECT w.id FROM ({sql}) w WHERE {matches} "
        "ORDER BY w.date_created DESC, w.metadata_file, w.uid LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(query, [*params, *values, *patterns, limit])
        return [pk for (pk,) in cursor.fetchall()]


class _Detoasted(Func):
    """A text column read once into memory (PostgreSQL)."""

    template = "(%(expressions)s || '')"
    output_field = TextField()
