"""The grid sorted on its visible document columns (reference 3.5, 3.6
[rec]): the values in order, missing and null values last in both
directions, ties newest first then in the order the products were written;
on PostgreSQL each order read from its index (dpd/search_sort.py)."""

from __future__ import annotations

import random
import string

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from dpd.metadata import from_ingested_document
from dpd.models import DataProduct
from dpd.search_sort import INDEXED, SORT_KEY_MAX_BYTES, SORT_KEY_PREFIX_CHARS

MISSING = object()
# (date in the execution block, value): equal values on one day and across
# days, a JSON null and a missing value. Lower-case letters only, so that
# any collation orders them as Python does.
CATALOGUE = [
    ("20240105", "bravo"),
    ("20240105", "alpha"),
    ("20240107", "bravo"),
    ("20240103", None),
    ("20240105", "bravo"),
    ("20240109", MISSING),
    ("20240101", "charlie"),
    ("20240107", "alpha"),
    ("20240108", "bravo"),
]


def add_product(number: int, day: str, field: str, value) -> DataProduct:
    """An ingested (open) product holding `value` at the dotted `field`."""
    document: dict = {"execution_block": f"eb-sort-{day}-{number:05d}"}
    if value is not MISSING:
        section, key = field.split(".")
        document[section] = {key: value}
    product = from_ingested_document(document)
    return DataProduct.objects.create(**DataProduct.fields_from(product))


def catalogue(field: str) -> list[tuple[DataProduct, object]]:
    return [(add_product(n, day, field, value), value) for n, (day, value) in enumerate(CATALOGUE)]


def expected(products: list[tuple[DataProduct, object]], descending: bool) -> list[str]:
    """The promised order: values (reversed for desc), then the valueless;
    ties newest first, then in the order written."""

    def tie_break(product: DataProduct) -> tuple[int, int]:
        return -product.date_created.toordinal(), product.pk

    held = sorted(
        ((p, v) for p, v in products if v not in (None, MISSING)), key=lambda pv: tie_break(pv[0])
    )
    held.sort(key=lambda pv: pv[1], reverse=descending)  # stable: equal values keep the tie-break
    valueless = sorted((p for p, v in products if v in (None, MISSING)), key=tie_break)
    return [str(p.uid) for p in [*(p for p, _ in held), *valueless]]


def grid_pages(field: str, direction: str, page_size: int) -> tuple[list[str], set[int]]:
    """Every row of the grid sorted on `field`, page by page, and the totals."""
    uids, totals, page = [], set(), 0
    while True:
        body = {
            "filterModel": {"items": [], "logicOperator": "and"},
            "sortModel": [{"field": field, "sort": direction}],
            "page": page,
            "pageSize": page_size,
        }
        response = APIClient().post("/filterdataproducts", body, format="json")
        assert response.status_code == 200, response.content
        answer = response.json()
        totals.add(answer["total"])
        uids += [row["uid"] for row in answer["data"]]
        if len(answer["data"]) < page_size:
            return uids, totals
        page += 1


@pytest.mark.django_db
@pytest.mark.parametrize("field", sorted(INDEXED))
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_every_visible_column_sorts_with_missing_values_last_page_by_page(field, direction):
    products = catalogue(field)

    for page_size in (25, 2):
        uids, totals = grid_pages(field, direction, page_size)
        assert uids == expected(products, direction == "desc")
        assert totals == {len(CATALOGUE)}


def long_text(seed: int, length: int) -> str:
    """Text that compresses little, as a pasted log or a hash list would."""
    letters = random.Random(seed).choices(string.ascii_letters + string.digits, k=length)
    return "".join(letters)


@pytest.mark.django_db
def test_a_note_too_long_for_an_index_entry_is_stored_and_sorted_by_its_start():
    # 6,000 characters that compress little: past a B-tree entry (~2.7 KB)
    # even compressed, so a key of the whole value would refuse the row.
    long_note = "m" + long_text(1, 6000)
    products = [
        (add_product(0, "20240101", "context.notes", "alpha"), "alpha"),
        (add_product(1, "20240101", "context.notes", long_note), long_note),
        (add_product(2, "20240101", "context.notes", "zulu"), "zulu"),
    ]
    assert len(long_note.encode()) > SORT_KEY_MAX_BYTES

    for direction in ("asc", "desc"):
        uids, _ = grid_pages("context.notes", direction, 25)
        assert uids == expected(products, direction == "desc")


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the bound is PostgreSQL's index")
def test_long_notes_alike_in_their_first_characters_keep_the_tie_break_order():
    start = long_text(2, SORT_KEY_PREFIX_CHARS)
    later = add_product(0, "20240102", "context.notes", start + "a" + long_text(3, 2000))
    earlier = add_product(1, "20240101", "context.notes", start + "b" + long_text(4, 2000))
    newer_first = [str(later.uid), str(earlier.uid)]

    assert grid_pages("context.notes", "asc", 25)[0] == newer_first
    assert grid_pages("context.notes", "desc", 25)[0] == newer_first


@pytest.mark.django_db
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the sort indexes exist on PostgreSQL"
)
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_a_sorted_page_is_read_from_the_columns_index(direction):
    """Whatever the planner prefers on a few rows, the page's ORDER BY must
    be one an index holds: a key written differently from the index's would
    sort every visible product at each request (2.9 s at 1,000,000)."""
    catalogue("context.observer")
    with CaptureQueriesContext(connection) as queries:
        grid_pages("context.observer", direction, 2)
    pages = [q["sql"] for q in queries.captured_queries if "ORDER BY dpd_sort_key" in q["sql"]]
    assert pages
    # The page's SELECT, whether sent alone or in a cursor (dpd.search_rows).
    select = pages[-1].split(" CURSOR FOR ", 1)[-1].split("; MOVE ", 1)[0]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute(f"EXPLAIN {select}")
        plan = "\n".join(line for (line,) in cursor.fetchall())
    assert f"Index Scan using dpd_sort_observer_{direction}" in plan, plan
    assert "Sort" not in plan.replace("dpd_sort_", ""), plan
