"""A page's total is counted once for the same matches and reused while the
catalogue is unchanged: paging and sorting a filtered grid used to count every
match again on every click (0.56-0.59 s for a filter that half of 1,000,000
products pass). What a user must never see: someone else's total, an added or
annotated product missing from the next total, a removal missing for long."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from annotations.models import Annotation
from dpd import search_rows
from dpd.models import DataProduct
from tests.annotation_helpers import TEAM, make_product

pytestmark = pytest.mark.usefixtures("indexed_sample")

EVERY = {"filterModel": {"items": []}}
EB_PREFIX = {
    "filterModel": {
        "items": [{"field": "execution_block", "operator": "contains", "value": "eb-"}],
        "logicOperator": "and",
    }
}


@pytest.fixture(autouse=True)
def _few_counted_ids(monkeypatch):
    """Past four matches the total is a COUNT(*) of its own (12 open products)."""
    monkeypatch.setattr(search_rows, "COUNTED_IDS", 4)


def page(body: dict, number: int, client: APIClient | None = None, **extra) -> tuple[dict, int]:
    """The grid's page and how many COUNT(*) statements answering it ran."""
    with CaptureQueriesContext(connection) as queries:
        response = (client or APIClient()).post(
            "/filterdataproducts", {**body, "page": number, "pageSize": 3, **extra}, format="json"
        )
    assert response.status_code == 200, response.content
    counts = sum("COUNT(*)" in query["sql"] for query in queries.captured_queries)
    return response.json(), counts


def member() -> APIClient:
    client = APIClient()
    user = User.objects.create_user("member")
    user.groups.add(Group.objects.create(name=TEAM))
    client.force_login(user)
    return client


def test_paging_and_sorting_the_same_filter_count_its_matches_once():
    first, counted = page(EB_PREFIX, 0)
    assert (first["total"], counted) == (12, 1)

    second, counted = page(EB_PREFIX, 1)
    resorted, counted_again = page(
        EB_PREFIX, 2, sortModel=[{"field": "execution_block", "sort": "desc"}]
    )

    assert (second["total"], resorted["total"]) == (12, 12)
    assert (counted, counted_again) == (0, 0)
    assert {row["uid"] for row in second["data"]}.isdisjoint(r["uid"] for r in first["data"])
    # Other matches are counted for themselves, not given this total.
    assert page(EVERY, 1)[1] == 1


def test_a_member_and_an_anonymous_caller_each_get_their_own_total():
    anonymous, _ = page(EVERY, 0)
    members, counted = page(EVERY, 0, member())
    again, _ = page(EVERY, 1)

    assert (anonymous["total"], members["total"], again["total"]) == (12, 14, 12)
    assert counted == 1


FIRST_MATCHES = "DECLARE dpd_page"


def test_a_first_page_whose_total_is_known_reads_only_its_own_rows():
    """Past COUNTED_IDS matches the first matches were read for each first
    page only to learn there were more; once the total is remembered, the
    page is read by itself (the grid's page 0 of 100 rows at 1,000,000
    products walked 1,001 matches)."""
    with CaptureQueriesContext(connection) as first_time:
        first, _ = page(EVERY, 0)
    with CaptureQueriesContext(connection) as again:
        second, counted = page(EVERY, 0)

    assert second == first
    assert counted == 0
    if connection.vendor == "postgresql":
        assert any(FIRST_MATCHES in q["sql"] for q in first_time.captured_queries)
        assert not any(FIRST_MATCHES in q["sql"] for q in again.captured_queries)


def test_an_added_product_is_in_the_next_total():
    assert page(EVERY, 1)[0]["total"] == 12
    make_product("eb-m009-20240101-00001")

    after, counted = page(EVERY, 1)

    assert (after["total"], counted) == (13, 1)


def test_a_new_annotation_is_in_the_next_total_of_an_annotation_filter():
    on_scan = {
        "filterModel": {"items": [{"field": "annotation", "operator": "contains", "value": "scan"}]}
    }
    products = list(DataProduct.objects.filter(access_group__isnull=True)[:6])
    for product in products[:5]:
        Annotation.objects.create(data_product_uid=product.uid, annotation_text="RFI in scan 3")
    assert page(on_scan, 0)[0]["total"] == 5

    Annotation.objects.create(data_product_uid=products[5].uid, annotation_text="scan 4 flagged")

    assert page(on_scan, 0)[0]["total"] == 6


@pytest.mark.parametrize("how", ["orm", "sql"])
def test_a_removal_is_in_the_next_total(how):
    """A removal moves no change time, but the number of removals, whatever
    removes the product (the ORM, or SQL by hand)."""
    with time_machine.travel(dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC), tick=False):
        assert page(EVERY, 0)[0]["total"] == 12
        gone = DataProduct.objects.filter(access_group__isnull=True).order_by("pk").first()
        if how == "orm":
            gone.delete()
        else:
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM dpd_dataproduct WHERE id = %s", [gone.pk])

        assert page(EVERY, 0)[0]["total"] == 11


def test_many_distinct_filters_do_not_push_a_login_lockout_out_of_the_cache(admin_user, settings):
    """Each filter's total is a cache entry: a guesser sending hundreds of
    distinct filters between guesses must not evict its own failure count
    (nor the throttles' history or the catalogue's field list)."""
    settings.DPD_LOGIN_FAILURE_LIMIT = 2
    guesser = APIClient(REMOTE_ADDR="198.51.100.7")
    for guess in ("a", "b"):
        guesser.post("/admin/login/", {"username": "admin", "password": guess})

    for n in range(400):
        filtered = {
            "filterModel": {
                "items": [
                    {"field": "execution_block", "operator": "doesNotContain", "value": f"{n}x"}
                ]
            }
        }
        assert page(filtered, 0, guesser)[0]["total"] == 12

    refused = guesser.post("/admin/login/", {"username": "admin", "password": "password"})
    assert refused.status_code == 429


@pytest.mark.parametrize("number", [0, 3], ids=["among-the-first", "beyond-them"])
def test_a_page_that_counts_its_total_stays_within_the_statement_budget(number):
    """docs/api.md, "Request bounds": at most 5 statements a request (the
    field catalogue's probe and read, the rows, the last change time, the
    total), on either database, the first time and after."""
    # A document field: the request reads the field catalogue first.
    every_interface = {
        "filterModel": {
            "items": [
                {
                    "field": "interface",
                    "operator": "equals",
                    "value": "http://schema.skao.int/ska-data-product-meta/0.1",
                }
            ]
        }
    }
    for _ in range(2):
        with CaptureQueriesContext(connection) as queries:
            answer, _ = page(every_interface, number)
        assert answer["total"] == 12
        assert len(queries) <= 5, [query["sql"][:80] for query in queries.captured_queries]


# --- A sort no index gives: its order is remembered too ------------------------------

# A column the sort indexes do not cover (dpd/search_sort.py): every match is
# read and sorted for a page.
UNINDEXED_SORT = [{"field": "execution_block", "sort": "desc"}]
READ_IDS = 'SELECT "dpd_dataproduct"."id" AS "pk" FROM'
POSTGRESQL_ONLY = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite sorts every page: no order is remembered"
)


def sorted_page(
    number: int, body: dict = EVERY, client: APIClient | None = None
) -> tuple[dict, int]:
    """The page sorted on UNINDEXED_SORT, and how many statements read the
    ids of every match (the remembered order's one read)."""
    with CaptureQueriesContext(connection) as queries:
        answer, _ = page(body, number, client, sortModel=UNINDEXED_SORT)
    return answer, sum(map(_reads_every_id, queries.captured_queries))


def _reads_every_id(query: dict) -> bool:
    return query["sql"].startswith(READ_IDS) and " LIMIT " not in query["sql"]


@POSTGRESQL_ONLY
def test_paging_a_sort_no_index_gives_sorts_the_matches_once(sqlite_peer):
    """At 1,000,000 products every page sorted on a hidden column sorted
    250,000 matches again (2.4 s); now the first page reads their order and
    the next pages read only their own rows, with the same answers as
    SQLite's, which sorts every page."""
    pages = [sorted_page(number) for number in range(5)]

    assert [orders for _, orders in pages] == [1, 0, 0, 0, 0]
    assert [len(answer["data"]) for answer, _ in pages] == [3, 3, 3, 3, 0]
    for number, (answer, _) in enumerate(pages):
        body = {**EVERY, "page": number, "pageSize": 3, "sortModel": UNINDEXED_SORT}
        assert answer == sqlite_peer.post("/filterdataproducts", body)["body"], number


@POSTGRESQL_ONLY
def test_another_caller_or_filter_gets_its_own_order():
    anonymous, _ = sorted_page(0)
    members, orders = sorted_page(0, client=member())
    filtered, filtered_orders = sorted_page(0, EB_PREFIX)

    assert (anonymous["total"], members["total"], filtered["total"]) == (12, 14, 12)
    assert (orders, filtered_orders) == (1, 1)


def test_an_added_product_is_on_the_next_sorted_page():
    first, _ = sorted_page(0)
    added = make_product("eb-zz9-20240101-00001")  # first in descending order

    after, _ = sorted_page(0)

    assert after["total"] == first["total"] + 1
    assert [row["uid"] for row in after["data"]] == [
        str(added.uid),
        *[row["uid"] for row in first["data"][:2]],
    ]


def test_a_removed_product_leaves_the_sorted_pages_and_the_total_at_once():
    with time_machine.travel(dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC), tick=False):
        first, _ = sorted_page(0)
        gone = first["data"][1]["uid"]
        DataProduct.objects.filter(uid=gone).delete()

        later, orders = sorted_page(0)

    assert gone not in [row["uid"] for row in later["data"]]
    assert later["total"] == first["total"] - 1
    assert len(later["data"]) == 3
    assert orders == (connection.vendor == "postgresql")  # the order is read again
