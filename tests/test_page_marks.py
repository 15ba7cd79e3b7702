"""A grid page far into an index's order is read on from a row an earlier
page showed (dpd/search_marks.py), not walked to from the first row: at
1,000,000 products page 200 of a filter sorted on a visible column walked
10,055 rows for 25. What a user must never see: a page that differs from
the one read from the start, in any order, direction or paging pattern,
with equal values, missing values and equal dates; a removed product on a
page; an added one missing from it."""

from __future__ import annotations

import random

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from dpd import remembered_counts, search_rows
from dpd.metadata import from_ingested_document
from dpd.models import DataProduct

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite walks every page: no marks"
)

MISSING = object()
PAGE_SIZE = 3
# The filter half the products pass (an equality on a row field, as the
# bench's grid shapes: not a test of the search text, which reads every
# candidate anyway).
ON_MID = {
    "items": [{"field": "obscore.instrument_name", "operator": "equals", "value": "SKA-Mid"}],
    "logicOperator": "and",
}
SORTS = {
    "observer-asc": [{"field": "context.observer", "sort": "asc"}],
    "observer-desc": [{"field": "context.observer", "sort": "desc"}],
    "display-order": [],
    "date-asc": [{"field": "date_created", "sort": "asc"}],
}


@pytest.fixture(autouse=True)
def _every_page_past_the_first_matches(monkeypatch):
    """Pages among the first matches are read with their total: none here."""
    monkeypatch.setattr(search_rows, "COUNTED_IDS", 0)


def add_product(number: int, day: int, observer, *, mid: bool = True) -> DataProduct:
    """An open product of the given day in 2024 and observer (None: a JSON
    null; MISSING: none), on SKA-Mid or SKA-Low."""
    context = {} if observer is MISSING else {"observer": observer}
    document = {
        "execution_block": f"eb-mark-202401{day:02d}-{number:05d}",
        "context": context,
        "obscore": {"instrument_name": "SKA-Mid" if mid else "SKA-Low"},
    }
    product = from_ingested_document(document)
    return DataProduct.objects.create(**DataProduct.fields_from(product))


@pytest.fixture
def catalogue(db) -> list[DataProduct]:
    """40 products: few observers, so long runs of equal values across and
    within days, nulls and missing values among them; a quarter on SKA-Low."""
    chosen = random.Random(25)
    observers = ["alpha", "bravo", "bravo", "charlie", None, MISSING]
    return [
        add_product(n, chosen.randint(1, 4), chosen.choice(observers), mid=n % 4 != 0)
        for n in range(40)
    ]


def grid_page(sort: list, number: int) -> tuple[list[tuple[int, str]], int, list[str]]:
    """The page's (position, uid) rows, its total and the SQL it ran."""
    body = {"filterModel": ON_MID, "sortModel": sort, "page": number, "pageSize": PAGE_SIZE}
    with CaptureQueriesContext(connection) as queries:
        response = APIClient().post("/filterdataproducts", body, format="json")
    assert response.status_code == 200, response.content
    answer = response.json()
    rows = [(row["id"], row["uid"]) for row in answer["data"]]
    return rows, answer["total"], [query["sql"] for query in queries.captured_queries]


def read_on(statements: list[str]) -> list[str]:
    """The statements that read a page on from a mark."""
    return [sql for sql in statements if "UNION ALL" in sql and "dpd_mark_0" in sql]


def pages_without_marks(sort: list, numbers: list[int], monkeypatch) -> dict[int, tuple]:
    with monkeypatch.context() as patch:
        patch.setattr(remembered_counts.Remembered, "marks", lambda self, products: None)
        return {number: grid_page(sort, number)[:2] for number in set(numbers)}


@pytest.mark.parametrize("sort", SORTS.values(), ids=SORTS.keys())
def test_every_page_read_on_from_a_mark_is_the_page_read_from_the_start(
    sort, catalogue, monkeypatch
):
    last = 30 // PAGE_SIZE + 1  # past the end: an empty page
    jumps = random.Random(7).choices(range(last + 1), k=12)
    numbers = [*range(last + 1), *reversed(range(last + 1)), *jumps, 5, 5, 6]
    expected = pages_without_marks(sort, numbers, monkeypatch)
    assert sum(len(expected[n][0]) for n in range(last + 1)) == expected[0][1] == 30

    read_on_from_marks = 0
    for number in numbers:
        rows, total, statements = grid_page(sort, number)
        assert (rows, total) == expected[number], (number, numbers)
        read_on_from_marks += bool(read_on(statements))

    # Page 0 is read from the start (nothing before it) and marks nothing;
    # the first page after it, and the first ever, walk.
    assert read_on_from_marks >= sum(number > 0 for number in numbers) - 3


def test_a_page_asked_again_reads_its_own_rows_and_the_next_one_row_more(catalogue):
    sort = SORTS["observer-asc"]
    first, _, statements = grid_page(sort, 4)
    assert not read_on(statements)  # nothing marked yet: read from the start

    again, _, statements = grid_page(sort, 4)
    (again_sql,) = read_on(statements)
    following, _, statements = grid_page(sort, 5)
    (following_sql,) = read_on(statements)

    assert again == first
    assert f"AS dpd_parts LIMIT {PAGE_SIZE};" in again_sql
    assert f"AS dpd_parts LIMIT {PAGE_SIZE + 1};" in following_sql
    assert following[0][0] == first[-1][0] + 1


def test_another_filter_or_order_does_not_read_on_from_these_marks(catalogue):
    grid_page(SORTS["observer-asc"], 4)

    for sort in (SORTS["observer-desc"], SORTS["display-order"]):
        assert not read_on(grid_page(sort, 4)[2])


def test_an_added_product_is_on_the_pages_read_at_once(catalogue, monkeypatch):
    sort = SORTS["observer-asc"]
    for number in range(4):
        grid_page(sort, number)
    added = add_product(99, 1, "alpha")  # early in the order: every later row moves

    pages = [grid_page(sort, number)[:2] for number in range(4)]

    assert pages == list(pages_without_marks(sort, list(range(4)), monkeypatch).values())
    assert str(added.uid) in {uid for rows, _ in pages for _, uid in rows}


def test_a_removed_product_leaves_the_pages_and_its_place_at_once(catalogue, monkeypatch):
    """A removal moves the catalogue's version (the number of removals): a
    mark past the removed product would stand one place too far."""
    sort = SORTS["observer-asc"]
    marked = [grid_page(sort, number)[0] for number in range(3)]
    gone = marked[0][0][1]
    DataProduct.objects.filter(uid=gone).delete()

    later = [grid_page(sort, number)[:2] for number in range(3)]

    assert gone not in {uid for rows, _ in later for _, uid in rows}
    assert later == list(pages_without_marks(sort, list(range(3)), monkeypatch).values())


def test_a_first_page_is_read_from_the_start_and_marks_nothing(catalogue):
    sort = SORTS["observer-asc"]
    for _ in range(2):
        assert not read_on(grid_page(sort, 0)[2])
    assert not read_on(grid_page(sort, 1)[2])  # page 0 left no mark
