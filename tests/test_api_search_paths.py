"""The fast paths of search and filter give the answers of the plain ones:
JSON rows spliced from stored text (DataProduct.row_json), the key:value
window over the newest products, grid filters on the execution_block column.
The plain paths' semantics are tested in test_api_search and test_api_filter."""

from __future__ import annotations

import csv
import io

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from dpd.metadata import from_volume_file
from dpd.models import DataProduct
from dpd.search_text import signature
from tests.test_api_filter import item, page
from tests.test_api_search import OPEN_IN_ORDER, WIDE, folders, search

pytestmark = pytest.mark.usefixtures("indexed_sample")


@pytest.fixture
def client() -> APIClient:
    return APIClient()


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


# --- Rows spliced from stored text; the newest-products window ------------------


def test_json_rows_equal_the_flattened_documents_field_by_field(client):
    rows = search(client, WIDE).json()
    products = DataProduct.objects.filter(access_group__isnull=True).in_display_order()
    assert rows == [{**p.flat_row(), "id": n} for n, p in enumerate(products, start=1)]


def test_the_json_answer_is_the_same_rows_as_the_browsable_api_renders(client):
    as_json = search(client, WIDE).json()
    as_csv = list(csv.DictReader(io.StringIO(search(client, WIDE, HTTP_ACCEPT="text/csv").text)))
    assert [row["uid"] for row in as_json] == [row["uid"] for row in as_csv]
    assert [str(row["id"]) for row in as_json] == [row["id"] for row in as_csv]


def test_the_store_name_follows_the_setting_not_what_was_stored(client, settings):
    settings.PVCNAME = "volume-b"
    rows = search(client, WIDE).json()
    assert {row["metadata_store_name"] for row in rows} == {"volume-b"}


def test_a_product_stored_before_row_json_existed_answers_the_same(client):
    expected = search(client, WIDE).json()
    DataProduct.objects.filter(execution_block="eb-m005-20231031-12345").update(row_json=None)
    assert search(client, WIDE).json() == expected


def test_document_keys_named_like_spliced_fields_do_not_leak(client):
    product = from_volume_file(
        b"execution_block: eb-splice-20240101-1\nid: 7\nmetadata_store_name: mine\n"
        b'context:\n  notes: "line\\u2028separator \\"quoted\\" \\u00e9"\nfiles: []\n',
        configured_root="/mnt/data/product",
        relative_metadata_file="eb-splice-20240101-1/ska-data-product.yaml",
    )
    DataProduct.objects.create(**DataProduct.fields_from(product))
    response = search(client, {**WIDE, "key_value_pairs": ["execution_block:eb-splice"]})
    (row,) = response.json()
    assert row["id"] == 1
    assert row["metadata_store_name"] == "shared"
    assert row["context.notes"] == 'line\u2028separator "quoted" \u00e9'
    assert b"\\u2028" in response.content  # escaped for JavaScript, as DRF writes it


def test_filter_rows_are_spliced_the_same_way(client):
    body = {"sortModel": [{"field": "date_created", "sort": "desc"}], "page": 1, "pageSize": 5}
    page = client.post("/filterdataproducts", body, format="json").json()
    products = DataProduct.objects.filter(access_group__isnull=True).in_display_order()[5:10]
    assert page["data"] == [{**p.flat_row(), "id": n} for n, p in enumerate(products, start=6)]
    assert page["total"] == 12


WINDOW_SQL = "SELECT w.id, w.search_text, w.row_json FROM"  # a part of the window


def catalogue_sql(queries: CaptureQueriesContext) -> list[str]:
    """The statements that read the catalogue (no savepoints or settings)."""
    return [q["sql"] for q in queries.captured_queries if "dpd_dataproduct" in q["sql"]]


COMMON_PAIR = ["interface:ska-data-product-meta"]  # every product has it
RARE_PAIR = ["files:TestDataFile5"]  # one open product
TWO_PAIRS = ["execution_block:eb-", "files:TestDataFile"]


@pytest.mark.parametrize("window", [1, 3, 4, 5, 6, 11, 12, 13, 2000])
@pytest.mark.parametrize(
    "pairs", [COMMON_PAIR, RARE_PAIR, TWO_PAIRS], ids=["common", "rare", "two"]
)
@pytest.mark.parametrize("paging", [{}, {"start": 0, "count": 4}, {"start": 4, "count": 2}])
def test_the_window_gives_the_answer_of_the_full_query_at_every_size(
    client, settings, window, pairs, paging
):
    settings.SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT = 5
    body = {**WIDE, "key_value_pairs": pairs, **paging}
    settings.SEARCH_WINDOW_ROWS = 0
    full = search(client, body).json()
    settings.SEARCH_WINDOW_ROWS = window
    assert search(client, body).json() == full


@pytest.mark.skipif(not django_settings.IS_POSTGRESQL, reason="the window is PostgreSQL's")
def test_the_window_reads_each_requests_own_dates(client, settings):
    """The window's statement is built once per process for each combination
    of date bounds present; each request's dates must still decide."""
    ranges = [
        ("2001-12-12", "2032-12-12"),
        ("2023-06-01", "2032-12-12"),
        ("2001-12-12", "2023-06-01"),
        ("", ""),
        ("2024-01-01", ""),
        ("", "2022-12-31"),
        ("2023-06-01", "2023-12-31"),
        ("2022-12-12", "2022-12-12"),
    ]
    answers = set()
    for start, end in ranges:
        body = {"start_date": start, "end_date": end, "key_value_pairs": COMMON_PAIR}
        settings.SEARCH_WINDOW_ROWS = 0
        full = folders(search(client, body))
        settings.SEARCH_WINDOW_ROWS = 2000
        assert folders(search(client, body)) == full, (start, end)
        answers.add(tuple(full))
    assert len(answers) == len(ranges) - 1  # all different, but the two unbounded ones


@pytest.mark.skipif(not django_settings.IS_POSTGRESQL, reason="the window is PostgreSQL's")
def test_a_page_found_among_the_newest_products_skips_the_full_query(client, settings):
    settings.SEARCH_WINDOW_ROWS = 4
    body = {**WIDE, "key_value_pairs": COMMON_PAIR, "start": 1, "count": 3}
    with CaptureQueriesContext(connection) as queries:
        page = search(client, body).json()
    assert [row["dataproduct_file"] for row in page["data"]] == OPEN_IN_ORDER[1:4]
    assert [row["id"] for row in page["data"]] == [2, 3, 4]
    assert page["total"] == 12
    assert page["more_results"] is True
    sql = catalogue_sql(queries)
    # The window, which reads the rows along, and the total; never the full
    # query's rows (the last change time names the remembered total).
    assert len(sql) == 3
    assert WINDOW_SQL in sql[0] and "LIMIT 4" in sql[0]
    assert '"indexed_at"' in sql[1] and "COUNT" not in sql[1]
    assert "COUNT(*)" in sql[2]


@pytest.mark.skipif(not django_settings.IS_POSTGRESQL, reason="the window is PostgreSQL's")
def test_a_page_not_all_in_the_window_runs_the_full_query(client, settings):
    settings.SEARCH_WINDOW_ROWS = 5  # the one match is the ninth open product
    body = {**WIDE, "key_value_pairs": RARE_PAIR, "start": 0, "count": 1}
    with CaptureQueriesContext(connection) as queries:
        page = search(client, body).json()
    assert [row["dataproduct_file"] for row in page["data"]] == ["eb-m002-20221212-12345"]
    assert page["total"] == 1
    sql = catalogue_sql(queries)
    # The window; whether candidates follow it (they do); the full query,
    # read by a cursor that gives the page and counts the rest (no COUNT).
    assert len(sql) == 3
    assert WINDOW_SQL in sql[0]
    assert "OFFSET 5" in sql[1] and "~" not in sql[1]
    assert "~" in sql[2] and "FETCH 1 FROM" in sql[2] and "MOVE ALL" in sql[2]


@pytest.mark.skipif(not django_settings.IS_POSTGRESQL, reason="the window is PostgreSQL's")
def test_the_window_walks_the_display_order_however_small_the_catalogue(client, settings):
    """PostgreSQL's costs prefer sorting a small table; the window must not
    (it stops after the page's matches, which the planner cannot know)."""
    plans = []

    def explain_window(execute, sql, params, many, context):
        if WINDOW_SQL in sql and "EXPLAIN" not in sql:
            with context["connection"].cursor() as cursor:
                # The plan of the read as sent: after the settings sent with it.
                cursor.execute(sql.replace(WINDOW_SQL, "EXPLAIN " + WINDOW_SQL), params)
                cursor.nextset()
                plans.append("\n".join(row[0] for row in cursor.fetchall()))
        return execute(sql, params, many, context)

    settings.SEARCH_WINDOW_ROWS = 2000
    # A list the window can hold (the default cap, 10,000, is past it).
    settings.SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT = 100
    with connection.cursor() as cursor:
        # The planner's statistics of this catalogue, not of whatever an
        # earlier test had committed when autovacuum last sampled the table
        # (in this transaction, rolled back with it): those once made the
        # full display-order index, filtered on access_group, look cheaper.
        cursor.execute("ANALYZE dpd_dataproduct")
        # As PostgreSQL costs a catalogue of a few thousand products: reading
        # rows in index order looks dearer than reading them all and sorting.
        cursor.execute("SET LOCAL random_page_cost = 1000")
    with connection.execute_wrapper(explain_window):
        search(client, {**WIDE, "key_value_pairs": COMMON_PAIR})
    (plan,) = plans
    assert "Index Scan using dpd_open_display_order" in plan
    assert "Sort" not in plan
    with connection.cursor() as cursor:  # the test's transaction goes on as before
        cursor.execute("SELECT current_setting('enable_sort')")
        assert cursor.fetchone() == ("on",)


@pytest.mark.skipif(not django_settings.IS_POSTGRESQL, reason="a PostgreSQL setting")
def test_the_planner_prices_a_cached_page_as_configured():
    # DATABASE_RANDOM_PAGE_COST, unset here: 1.1, not PostgreSQL's 4 (a disk seek).
    with connection.cursor() as cursor:
        cursor.execute("SHOW random_page_cost")
        assert cursor.fetchone() == ("1.1",)


@pytest.mark.skipif(not django_settings.IS_POSTGRESQL, reason="a PostgreSQL setting")
def test_the_connections_keep_a_large_filters_bitmap_exact():
    # DATABASE_WORK_MEM, unset here: 32MB, so the bitmap of a filter matching
    # most of up to ~3,000,000 products stays exact (PostgreSQL's 4MB turns
    # lossy past ~400,000, and every row of a lossy page is rechecked).
    with connection.cursor() as cursor:
        cursor.execute("SHOW work_mem")
        assert cursor.fetchone() == ("32MB",)


@pytest.mark.skipif(not django_settings.IS_POSTGRESQL, reason="the cursor is PostgreSQL's")
def test_paged_answers_leave_the_callers_transaction_as_it_was(client):
    # The test runs in a transaction, as a caller's code might.
    pages = [search(client, {**WIDE, "start": start, "count": 5}).json() for start in (0, 5, 10)]
    assert [p["total"] for p in pages] == [12, 12, 12]  # one cursor name, closed each time
    assert [row["dataproduct_file"] for p in pages for row in p["data"]] == OPEN_IN_ORDER
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('cursor_tuple_fraction')")
        assert cursor.fetchone() == ("0.1",)


@pytest.mark.skipif(not django_settings.IS_POSTGRESQL, reason="the window is PostgreSQL's")
def test_a_window_holding_every_candidate_is_the_whole_answer(client, settings):
    settings.SEARCH_WINDOW_ROWS = 12  # the open products, all of them
    body = {**WIDE, "key_value_pairs": RARE_PAIR, "start": 0, "count": 5}
    with CaptureQueriesContext(connection) as queries:
        page = search(client, body).json()
    assert [row["dataproduct_file"] for row in page["data"]] == ["eb-m002-20221212-12345"]
    assert (page["total"], page["more_results"]) == (1, False)
    sql = catalogue_sql(queries)
    # The window, and the check that no candidate follows it: no full query.
    assert len(sql) == 2
    assert WINDOW_SQL in sql[0] and "OFFSET 12" in sql[1]
    settings.SEARCH_WINDOW_ROWS = 11  # one open product left out: the full query runs
    with CaptureQueriesContext(connection) as queries:
        assert search(client, body).json() == page
    assert any("~" in q["sql"] and WINDOW_SQL not in q["sql"] for q in queries.captured_queries)


@pytest.mark.skipif(not django_settings.IS_POSTGRESQL, reason="the window is PostgreSQL's")
def test_matches_among_many_the_patterns_reject_are_read_in_growing_chunks(
    client, settings, needle_search
):
    """The signatures pass every open product, the patterns half of them."""
    body, full = needle_search
    assert full == OPEN_IN_ORDER[1::2][:4]
    settings.SEARCH_WINDOW_ROWS = 2000
    with CaptureQueriesContext(connection) as queries:
        assert folders(search(client, body)) == full
    sql = [q["sql"] for q in queries.captured_queries]
    # 4 rows (2 matches) with their row texts in one statement, then a
    # cursor over the window from its start, in one snapshot: 8 search texts
    # (4 matches), and the 4 matches' row texts.
    first = [s for s in sql if WINDOW_SQL in s]
    walk = [s for s in sql if "DECLARE dpd_window" in s]
    assert len(first) == 1 and "LIMIT 4;" in first[0]
    assert len(walk) == 1 and "w.row_json" not in walk[0] and "LIMIT" not in walk[0].split(")")[-1]
    assert [s for s in sql if s.startswith("FETCH")] == ["FETCH 8 FROM dpd_window"]
    assert "OFFSET" not in "".join(first + walk)


@pytest.mark.skipif(not django_settings.IS_POSTGRESQL, reason="the window is PostgreSQL's")
def test_a_pair_rare_among_the_newest_skips_the_walk_for_the_full_query(
    client, settings, monkeypatch
):
    """Only the oldest open product matches; the signatures pass them all.
    The first read (4 rows, no match) says the window cannot hold a page:
    no cursor walks it, and the full query answers."""
    body, full = _needles(client, settings, monkeypatch, lambda n, count: n == count - 1)
    assert full == [OPEN_IN_ORDER[-1]]

    settings.SEARCH_WINDOW_ROWS = 10  # 12 open products: more follow the window
    with CaptureQueriesContext(connection) as queries:
        assert folders(search(client, body)) == full
    sql = [q["sql"] for q in queries.captured_queries]
    first = [s for s in sql if WINDOW_SQL in s]
    assert len(first) == 1 and "LIMIT 4;" in first[0]
    assert not [s for s in sql if "dpd_window" in s]
    assert any("~" in s and WINDOW_SQL not in s for s in sql)  # the full query

    settings.SEARCH_WINDOW_ROWS = 20  # the window may hold a page: it is walked
    with CaptureQueriesContext(connection) as queries:
        assert folders(search(client, body)) == full
    assert any("DECLARE dpd_window" in q["sql"] for q in queries.captured_queries)


@pytest.fixture
def needle_search(client, settings, monkeypatch) -> tuple[dict, list[str]]:
    """Every other open product matches: the signatures pass them all, the
    patterns half."""
    return _needles(client, settings, monkeypatch, lambda n, count: n % 2 == 1)


def _needles(client, settings, monkeypatch, matches) -> tuple[dict, list[str]]:
    """Every open product's text holds "notes" and "needle", in the same
    field for those `matches(position, count)` picks (display order). The
    window reads chunks of exactly what is missing; pages of 4. Gives the
    search body and the full query's answer."""
    from dpd import search_rows

    monkeypatch.setattr(search_rows, "_CHUNK_SLACK", 0)
    products = list(DataProduct.objects.filter(access_group__isnull=True).in_display_order())
    for n, product in enumerate(products):
        text = "\x1econtext.notes\x1fnone\x1econtext.observer\x1fa needle\x1e"
        if matches(n, len(products)):
            text = "\x1econtext.notes\x1fa needle\x1e"
        DataProduct.objects.filter(pk=product.pk).update(
            search_text=text, search_signature=signature(text)
        )
    settings.SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT = 4
    body = {**WIDE, "key_value_pairs": ["notes:needle"]}
    settings.SEARCH_WINDOW_ROWS = 0
    return body, folders(search(client, body))


@pytest.mark.skipif(not django_settings.IS_POSTGRESQL, reason="the window is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_a_product_indexed_between_two_chunks_repeats_no_row(client, settings, needle_search):
    import psycopg

    body, expected = needle_search
    text = "\x1econtext.notes\x1fnone\x1econtext.observer\x1fa needle\x1e"
    copied = DataProduct.objects.filter(access_group__isnull=True).first().pk
    committed = []

    def index_a_newer_product(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if WINDOW_SQL in sql and not committed:
            # Another process commits a product newer than all, passing the
            # signature test and failing the pattern, after the first chunk.
            with psycopg.connect(**connection.get_connection_params()) as other:
                other.execute(
                    "INSERT INTO dpd_dataproduct (uid, execution_block, metadata_file, "
                    "dataproduct_file, date_created, metadata, access_group, source, "
                    "indexed_at, search_text, search_signature, field_types, row_json) "
                    "SELECT gen_random_uuid(), execution_block, 'new/ska-data-product.yaml', "
                    "'new', '2030-01-01', metadata, NULL, source, now(), %s, %s::bit(2048), "
                    "field_types, row_json FROM dpd_dataproduct WHERE id = %s",
                    [text, signature(text), copied],
                )
            committed.append(True)
        return result

    settings.SEARCH_WINDOW_ROWS = 2000
    with connection.execute_wrapper(index_a_newer_product):
        assert folders(search(client, body)) == expected
    assert committed and DataProduct.objects.filter(dataproduct_file="new").exists()


@pytest.mark.django_db(transaction=True)
def test_products_written_by_the_indexer_answer_from_their_stored_rows(client, sample_volume):
    from indexing.indexer import index_volume

    DataProduct.objects.all().delete()
    index_volume(workers=2, batch_size=4)  # the COPY writer on PostgreSQL
    assert not DataProduct.objects.filter(row_json__isnull=True).exists()
    assert not DataProduct.objects.filter(search_signature__isnull=True).exists()
    products = DataProduct.objects.filter(access_group__isnull=True).in_display_order()
    expected = [{**p.flat_row(), "id": n} for n, p in enumerate(products, start=1)]
    assert search(client, WIDE).json() == expected
    # The signatures the workers computed pass every product of a common pair.
    body = {**WIDE, "key_value_pairs": ["interface:ska-data-product-meta"]}
    assert search(client, body).json() == expected


@pytest.mark.parametrize(
    ("pair", "matches"),
    [
        ("notes:a%b_c.*(x)|\\d", True),
        ("notes:.*(x)", True),
        ("notes:%", True),
        ("notes:\\", True),
        ("no%tes:a", False),
        ("notes:a%b_c.*(y)", False),
        ("notes:", None),  # any product with notes: the newest of them
        (":a%b", True),
    ],
)
def test_the_window_treats_pattern_characters_as_literals_like_the_full_query(
    client, settings, pair, matches
):
    text = "\x1econtext.notes\x1fa%b_c.*(x)|\\d\x1e"
    DataProduct.objects.filter(execution_block="eb-m005-20231031-12345").update(
        search_text=text, search_signature=signature(text)
    )
    settings.SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT = 1  # one match fills the page
    body = {**WIDE, "key_value_pairs": [pair]}
    settings.SEARCH_WINDOW_ROWS = 0
    full = folders(search(client, body))
    settings.SEARCH_WINDOW_ROWS = 2000
    assert folders(search(client, body)) == full
    if matches is None:
        assert len(full) == 1
    else:
        assert (full == ["eb-m005-20231031-12345"]) is matches
    assert DataProduct.objects.count() == 15


# --- execution_block through its own column and index -----------------------------


@pytest.fixture
def odd_execution_block():
    """A product whose execution block holds a separator and ends with a
    newline, and one with LIKE's wildcards and non-ASCII capitals in it."""
    from dpd.metadata import from_ingested_document

    for execution_block in ("eb-ctl\x1fx.*-20240101-1\n", "EB-ÜNÏ_100%\\-20240101-2"):
        product = from_ingested_document(
            {"execution_block": execution_block, "files": [], "context": {}}
        )
        DataProduct.objects.create(**DataProduct.fields_from(product))


@pytest.mark.parametrize(
    ("operator", "value"),
    [
        ("contains", "CTL X"),  # the separator is a space in the search text
        ("contains", "x.*"),
        ("contains", ".*-2"),
        ("endsWith", "-1"),
        ("endsWith", "-1\n"),
        ("equals", "EB-CTL X.*-20240101-1\n"),
        ("equals", "eb-ctl x.*-20240101-1"),
        ("startsWith", "EB-CTL"),
        ("startsWith", "ctl"),
        ("doesNotContain", "m00"),
        ("doesNotEqual", "eb-m005-20231031-12345"),
        ("isAnyOf", ["eb-m001-20230921-245", "EB-CTL X.*-20240101-1\n", "(", "x|y"]),
        ("contains", "("),
        ("contains", "\\"),
        # LIKE's wildcards and escape are literals; capitals fold beyond ASCII.
        ("contains", "%"),
        ("contains", "_1"),
        ("contains", "ünï_100%\\"),
        ("equals", "eb-ünï_100%\\-20240101-2"),
        ("startsWith", "eb_"),
        ("startsWith", "EB-Ü"),
        ("endsWith", "%-20240101-2"),
        ("endsWith", "_-20240101-2"),
        ("contains", "ÜNÏ"),
        ("isAnyOf", ["eb-ünï_100%\\-20240101-2", "%"]),
    ],
)
def test_execution_block_filters_answer_as_the_search_text_would(
    anonymous, odd_execution_block, operator, value
):
    from dpd import search_text

    shown = {
        row["uid"] for row in page(anonymous, item("execution_block", operator, value))["data"]
    }
    # isAnyOf strips each value, as the grid sends them comma-separated.
    values = [v.strip() for v in value] if isinstance(value, list) else [value]
    positive = {"doesNotContain": "contains", "doesNotEqual": "equals", "isAnyOf": "equals"}
    positive_operator = positive.get(operator, operator)
    if positive_operator == "equals":  # the whole value, as the search text holds it
        head = f"{search_text.RS}execution_block{search_text.US}"
        alternatives = "|".join(search_text.literal(v) for v in values)
        pattern = f"{head}({alternatives})[{search_text.GS}{search_text.RS}]"
    else:
        pattern = search_text.field_pattern("execution_block", positive_operator, values)
    by_text = DataProduct.objects.filter(access_group__isnull=True, search_text__iregex=pattern)
    if operator.startswith("doesNot"):
        by_text = DataProduct.objects.filter(access_group__isnull=True).exclude(
            pk__in=by_text.values("pk")
        )
    assert shown == {str(uid) for uid in by_text.values_list("uid", flat=True)}


LIKE_TEXTS = ["abc%_\\d", "a_c", "aXc", "ünï", "x\ny", "%", "_", "\\", "", "b", "abc"]


def like_answers(pattern: str) -> tuple[set[str], set[str]]:
    """The LIKE_TEXTS that PostgreSQL's folded LIKE and the pattern's Python
    regular expression (dpd.models.FoldedLike.as_sqlite) each find."""
    import re

    from dpd.search_text import like_as_regex

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t FROM unnest(%s::text[]) t WHERE lower(t) LIKE lower(%s)",
            [LIKE_TEXTS, pattern],
        )
        by_postgresql = {text for (text,) in cursor.fetchall()}
    return {text for text in LIKE_TEXTS if re.search(like_as_regex(pattern), text)}, by_postgresql


@pytest.mark.skipif(not django_settings.IS_POSTGRESQL, reason="compared with PostgreSQL's LIKE")
@pytest.mark.parametrize("operator", ["contains", "equals", "startsWith", "endsWith"])
@pytest.mark.parametrize(
    "value", ["%", "_", "\\", "a_c", "A%C", "\\%", "ÜNÏ", "x\ny", ".*", "b", "abc%_\\d"]
)
def test_sqlite_reads_execution_block_filters_as_postgresql_does(operator, value):
    """SQLite's execution_block filter runs its LIKE pattern as a Python
    regular expression: the same answers as PostgreSQL's LIKE."""
    from dpd.search_text import like_pattern

    by_python, by_postgresql = like_answers(like_pattern(operator, value))
    assert by_python == by_postgresql


@pytest.mark.skipif(not django_settings.IS_POSTGRESQL, reason="compared with PostgreSQL's LIKE")
@pytest.mark.parametrize("pattern", ["a_c", "_", "%_", "__", "\\_", "%\\%%", "Ü%", "x_y", "%b%"])
def test_like_wildcards_read_as_postgresql_reads_them(pattern):
    by_python, by_postgresql = like_answers(pattern)
    assert by_python == by_postgresql


@pytest.mark.skipif(not django_settings.IS_POSTGRESQL, reason="a PostgreSQL index")
def test_execution_block_filters_read_their_trigram_index(anonymous):
    """The filter's expression must be the index's, or every grid filter on
    the first column reads the whole table (the planner matches expressions,
    not names)."""
    plans = []

    def explain_page(execute, sql, params, many, context):
        if "DECLARE dpd_page" in sql:
            read = sql.split("CURSOR FOR ", 1)[1].split("; MOVE", 1)[0]
            with context["connection"].cursor() as cursor:
                cursor.execute("EXPLAIN " + read, params)
                plans.append("\n".join(row[0] for row in cursor.fetchall()))
        return execute(sql, params, many, context)

    with connection.cursor() as cursor:
        # Twenty products: only a plan that can read neither the table nor an
        # index in display order (the open products' one is dropped with the
        # test's transaction: without a condition on its columns, a bitmap of
        # every open product is still a plan) shows whether the trigram index
        # serves the filter.
        cursor.execute(
            "SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = off; "
            "DROP INDEX dpd_open_display_order"
        )
    for operator in ("contains", "equals", "startsWith", "endsWith"):
        with connection.execute_wrapper(explain_page):
            page(anonymous, item("execution_block", operator, "m00"))
    assert len(plans) == 4
    assert all("Bitmap Index Scan on dpd_eb_folded_trgm" in plan for plan in plans), plans
