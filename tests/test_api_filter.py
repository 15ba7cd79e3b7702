"""POST /filterdataproducts over HTTP (reference 2.4, 3.5, 3.6, section 7)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from dpd.models import DataProduct

pytestmark = pytest.mark.usefixtures("indexed_sample")

GROUP = "ac9d0e43-931d-455d-b916-7e508db78a8e"
HIDDEN = {
    "eb-notebook-20240320-83046/pb-notebookvr-20240320-83046",  # #13
    "eb-orcatest-20240814-94773/scan1-5",  # #14
    "eb-test-20240513-47584/pb-testrealtime-20240513-47584",  # #18
}


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


@pytest.fixture
def member() -> APIClient:
    """A Django user in the group that may see #13 and #14."""
    user = User.objects.create_user("member")
    user.groups.add(Group.objects.create(name=GROUP))
    client = APIClient()
    client.force_login(user)
    return client


def grid(client: APIClient, body, **extra):
    return client.post("/filterdataproducts", body, format="json", **extra)


def page(client: APIClient, *items, logic="and", panel=(), sort=(), size=100, **extra):
    body = {
        "filterModel": {"items": list(items), "logicOperator": logic},
        "searchPanelOptions": {"items": list(panel), "logicOperator": "and"},
        "sortModel": list(sort),
        "page": 0,
        "pageSize": size,
    }
    response = grid(client, body, **extra)
    assert response.status_code == 200, response.content
    return response.json()


def folders(result) -> list[str]:
    rows = result["data"] if isinstance(result, dict) else result
    return [row["dataproduct_file"] for row in rows]


def item(field, operator, value=""):
    return {"field": field, "operator": operator, "value": value, "id": 1}


# --- Section 7 ---------------------------------------------------------------------------


def test_an_anonymous_caller_sees_the_twelve_open_products(anonymous):
    result = page(anonymous)
    assert result["total"] == 12
    shown = set(folders(result))
    assert not shown & HIDDEN
    assert {"eb-m005-20231031-12345", "eb-test-20200325-00001"} <= shown


def test_a_malformed_authorization_header_is_no_identity(anonymous):
    result = page(anonymous, HTTP_AUTHORIZATION="NotBearer x y")
    assert result["total"] == 12


def test_a_member_of_the_group_sees_fourteen(member):
    result = page(member)
    assert result["total"] == 14
    assert set(folders(result)) & HIDDEN == HIDDEN - {
        "eb-test-20240513-47584/pb-testrealtime-20240513-47584"
    }


def test_the_legacy_form_fields_request_finds_one_product(anonymous):
    body = {
        "searchPanelOptions": {
            "items": [
                {"field": "date_created", "operator": "greaterThan", "value": "2020-01-01"},
                {"field": "date_created", "operator": "lessThan", "value": "2030-01-01"},
                {
                    "field": "formFields",
                    "keyPairs": [
                        {"keyPair": "execution_block", "valuePair": "eb-m001-20221212-12345"}
                    ],
                },
            ],
            "logicOperator": "and",
        }
    }
    rows = grid(anonymous, body).json()
    assert isinstance(rows, list)  # no page, no pageSize: the plain list
    assert folders(rows) == ["eb-m001-20221212-12345"]
    assert rows[0]["uid"] == "c05bce72-4a6e-234f-06e7-02dc92aba3f4"


def test_execution_block_contains_finds_only_that_product(anonymous):
    result = page(anonymous, item("execution_block", "contains", "m001-20230921"))
    assert folders(result) == ["eb-m001-20230921-245"]
    assert result["total"] == 1


def test_the_dashboards_usual_request_runs_one_query(anonymous, django_assert_num_queries):
    # execution_block, the date panel and the date sort need no field
    # catalogue; one cursor over the matches gives the page and the total
    # (elsewhere than PostgreSQL: one read of the matches' rows).
    with django_assert_num_queries(1):
        result = page(
            anonymous,
            item("execution_block", "contains", "eb-m00"),
            panel=[item("date_created", "onOrAfter", "2019-01-01")],
            sort=[{"field": "date_created", "sort": "desc"}],
            size=3,
        )
    assert folders(result) == [
        "eb-m005-20231031-12345",
        "eb-m001-20230921-245",
        "eb-m001-20221212-12345",
    ]
    assert result["total"] == 6


def test_the_dashboards_request_gives_a_page_and_the_total(anonymous):
    body = {
        "filterModel": {
            "items": [
                {"field": "execution_block", "operator": "contains", "id": 51411, "value": "m001"}
            ],
            "logicOperator": "and",
            "quickFilterValues": [],
            "quickFilterLogicOperator": "and",
        },
        "searchPanelOptions": {
            "items": [
                {"field": "date_created", "operator": "onOrAfter", "value": "2020-01-01"},
                {"field": "metadata_store_name", "operator": "equals", "value": "shared"},
            ],
            "logicOperator": "and",
        },
        "sortModel": [{"field": "date_created", "sort": "desc"}],
        "page": 0,
        "pageSize": 25,
    }
    result = grid(anonymous, body).json()
    assert folders(result) == ["eb-m001-20230921-245", "eb-m001-20221212-12345"]
    assert result["total"] == 2
    row = result["data"][0]
    for key in ("id", "execution_block", "dataproduct_file", "metadata_file", "uid"):
        assert key in row
    assert row["metadata_store_name"] == "shared"


def test_the_reference_request_replayed_as_sent_finds_nothing_after_2024(anonymous):
    # Reference 2.4's body verbatim: no m001 product is dated 2024 or later.
    body = {
        "filterModel": {
            "items": [
                {"field": "execution_block", "operator": "contains", "id": 51411, "value": "m001"}
            ],
            "logicOperator": "and",
            "quickFilterValues": [],
            "quickFilterLogicOperator": "and",
        },
        "searchPanelOptions": {
            "items": [
                {"field": "date_created", "operator": "onOrAfter", "value": "2024-01-01"},
                {"field": "metadata_store_name", "operator": "equals", "value": "shared"},
            ],
            "logicOperator": "and",
        },
        "sortModel": [{"field": "date_created", "sort": "desc"}],
        "page": 0,
        "pageSize": 25,
    }
    response = grid(anonymous, body)
    assert response.status_code == 200
    assert response.json() == {"data": [], "total": 0}


def test_the_first_load_body_lists_everything_visible(anonymous):
    result = grid(anonymous, {"filterModel": {}, "page": 0, "pageSize": 25}).json()
    assert result["total"] == 12


# --- Paging and ids ----------------------------------------


def test_pages_follow_each_other_and_ids_are_positions(anonymous):
    first = page(anonymous, size=5)
    body = {"page": 2, "pageSize": 5}
    third = grid(anonymous, body).json()
    assert [row["id"] for row in first["data"]] == [1, 2, 3, 4, 5]
    assert [row["id"] for row in third["data"]] == [11, 12]
    assert third["total"] == 12


def test_a_refused_body_leaves_nothing_behind_for_the_next_request(anonymous):
    # One validating serializer serves every request of a process.
    first = page(anonymous, item("execution_block", "contains", "m001"), size=1)
    refused = grid(anonymous, {"sortModel": [{"sort": "asc"}], "pageSize": "many"})
    again = page(anonymous, item("execution_block", "contains", "m001"), size=1)
    assert refused.status_code == 400
    assert refused.json() == {
        "detail": "sortModel: 0: field: This field is required.",
        "errors": {
            "sortModel": {"0": {"field": ["This field is required."]}},
            "pageSize": ["A valid integer is required."],
        },
    }
    assert again == first
    assert again["total"] == 2


def test_a_page_past_the_end_is_empty_with_the_true_total(anonymous):
    result = grid(anonymous, {"page": 9, "pageSize": 5}).json()
    assert result == {"data": [], "total": 12}


def test_the_page_size_is_capped(anonymous, settings):
    settings.SEARCH_MAX_PAGE_SIZE = 3
    result = grid(anonymous, {"page": 0, "pageSize": 100}).json()
    assert len(result["data"]) == 3
    assert result["total"] == 12


# --- Operators (reference 3.6) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("contains", "M005", ["eb-m005-20231031-12345"]),  # case-insensitive
        ("equals", "EB-M005-20231031-12345", ["eb-m005-20231031-12345"]),
        ("equals", "eb-m005", []),
        ("startsWith", "eb-m00", None),
        ("endsWith", "-245", ["eb-m001-20230921-245"]),
        ("isAnyOf", ["eb-m001-20230921-245", "EB-M005-20231031-12345"], None),
        ("isAnyOf", "eb-m001-20230921-245,eb-m005-20231031-12345", None),
    ],
)
def test_string_operators_match_case_insensitively(anonymous, operator, value, expected):
    shown = folders(page(anonymous, item("execution_block", operator, value)))
    if operator == "startsWith":
        assert len(shown) == 6 and all(f.startswith("eb-m00") for f in shown)
    elif operator == "isAnyOf":
        assert shown == ["eb-m005-20231031-12345", "eb-m001-20230921-245"]
    else:
        assert shown == expected


def test_does_not_contain_also_matches_products_without_the_field(anonymous):
    # #11, #12, #15 and #16 have no context.* fields at all.
    result = page(anonymous, item("context.observer", "doesNotContain", "AIV"))
    assert "eb-test-20200325-00001" in folders(result)
    assert "eb-m005-20231031-12345" not in folders(result)


def test_does_not_equal_excludes_exact_matches_only(anonymous):
    result = page(anonymous, item("execution_block", "doesNotEqual", "eb-m005-20231031-12345"))
    assert result["total"] == 11


def test_is_empty_means_missing_null_or_blank(anonymous):
    empty = folders(page(anonymous, item("context.observer", "isEmpty")))
    not_empty = folders(page(anonymous, item("context.observer", "isNotEmpty")))
    assert "eb-test-20200325-00001" in empty
    assert "eb-m005-20231031-12345" in not_empty
    assert len(empty) + len(not_empty) == 12
    assert not set(empty) & set(not_empty)


@pytest.mark.parametrize(
    ("operator", "value", "count"),
    # Open products with obscore.pol_xel: #3 has 2; #6, #7 and #17 have 4.
    [
        ("=", 4, 3),
        ("=", "4", 3),
        ("!=", 4, 9),
        (">", 3, 3),
        (">=", "4", 3),
        ("<", 4, 1),
        ("<=", 4.0, 4),
    ],
)
def test_number_operators_compare_numbers(anonymous, operator, value, count):
    result = page(anonymous, item("obscore.pol_xel", operator, value))
    assert result["total"] == count


def test_a_number_operator_never_matches_text_values(anonymous):
    # obscore.target_name is text; comparing it with a number matches nothing.
    assert page(anonymous, item("obscore.target_name", "<", 10**9))["total"] == 0


@pytest.mark.parametrize(
    ("operator", "value", "count"),
    [
        ("is", "2022-12-12", 2),
        ("not", "2022-12-12", 10),
        ("after", "2023-10-31T00:00:00.000Z", 3),
        ("onOrAfter", "2023-10-31", 4),
        ("before", "2020-03-25", 2),
        ("onOrBefore", "2020-03-25", 3),
        ("greaterThan", "2024-02-01", 3),
        ("lessThan", "2019-10-31", 1),
        # Not zero-padded: the date %Y-%m-%d reads (reference 3.5), not ignored.
        ("greaterThan", "2024-2-1", 3),
        ("onOrBefore", "2020-3-25", 3),
    ],
)
def test_date_operators_compare_calendar_dates(anonymous, operator, value, count):
    assert page(anonymous, item("date_created", operator, value))["total"] == count


def test_or_applies_within_the_filter_model_and_the_panel_still_ands(anonymous):
    result = page(
        anonymous,
        item("execution_block", "contains", "m005"),
        item("execution_block", "contains", "m003"),
        logic="or",
        panel=[item("date_created", "onOrAfter", "2020-01-01")],
    )
    assert folders(result) == ["eb-m005-20231031-12345"]


# Items that every product passes, and their twins that none passes: an OR
# with one of the first matches everything (reference 3.6 [rec], 4.4).
ALWAYS_TRUE = [
    item("date_created", "isNotEmpty"),
    item("metadata_store_name", "equals", "shared"),
    item("metadata_store_name", "isNotEmpty"),
    item("metadata_store_name", "doesNotEqual", "DLM"),
    item("metadata_store_name", "doesNotContain", "dlm"),
    item("metadata_store_name", "isAnyOf", ["DLM", "shared"]),
]
ALWAYS_FALSE = [
    item("date_created", "isEmpty"),
    item("metadata_store_name", "equals", "DLM"),
    item("metadata_store_name", "isEmpty"),
    item("metadata_store_name", "doesNotEqual", "shared"),
    item("metadata_store_name", "doesNotContain", "SHA"),
    item("metadata_store_name", "isAnyOf", ["DLM", "SDP"]),
]
M005 = item("execution_block", "contains", "m005")


@pytest.mark.parametrize("always", ALWAYS_TRUE)
@pytest.mark.parametrize("first", [True, False])
def test_an_or_with_an_item_every_product_passes_matches_every_product(anonymous, always, first):
    items = [always, M005] if first else [M005, always]
    assert page(anonymous, *items, logic="or")["total"] == 12


@pytest.mark.parametrize("never", ALWAYS_FALSE)
@pytest.mark.parametrize("first", [True, False])
def test_an_or_with_an_item_no_product_passes_matches_the_other_items(anonymous, never, first):
    items = [never, M005] if first else [M005, never]
    assert folders(page(anonymous, *items, logic="or")) == ["eb-m005-20231031-12345"]


@pytest.mark.parametrize("always", ALWAYS_TRUE)
def test_an_and_with_an_item_every_product_passes_matches_the_other_items(anonymous, always):
    assert folders(page(anonymous, always, M005)) == ["eb-m005-20231031-12345"]
    assert page(anonymous, always)["total"] == 12


@pytest.mark.parametrize("never", ALWAYS_FALSE)
def test_an_and_with_an_item_no_product_passes_matches_nothing(anonymous, never):
    assert page(anonymous, never, M005)["total"] == 0
    assert page(anonymous, never)["total"] == 0
    assert page(anonymous, never, never, logic="or")["total"] == 0


def test_an_or_of_constant_items_in_the_panel_still_ands_with_the_grid(anonymous):
    result = page(
        anonymous,
        ALWAYS_TRUE[0],
        ALWAYS_FALSE[0],
        logic="or",
        panel=[M005, ALWAYS_TRUE[1]],
    )
    assert folders(result) == ["eb-m005-20231031-12345"]
    assert page(anonymous, ALWAYS_TRUE[0], logic="or", panel=[ALWAYS_FALSE[1]])["total"] == 0


def test_an_empty_legacy_form_is_ignored_not_matched_by_everything(anonymous):
    empty_form = {"field": "formFields", "keyPairs": []}
    assert folders(page(anonymous, empty_form, M005, logic="or")) == ["eb-m005-20231031-12345"]


def test_store_name_equals_the_volumes_store(anonymous):
    assert page(anonymous, item("metadata_store_name", "equals", "shared"))["total"] == 12
    assert page(anonymous, item("metadata_store_name", "equals", "DLM"))["total"] == 0


def test_annotation_text_filters_products_case_insensitively(anonymous):
    from annotations.models import Annotation

    uid = DataProduct.objects.get(execution_block="eb-m005-20231031-12345").uid
    Annotation.objects.create(
        data_product_uid=uid, annotation_text="RFI visible in scan 3.", user_principal_name="a@b"
    )
    result = page(anonymous, item("annotation", "contains", "rfi VISIBLE"))
    assert folders(result) == ["eb-m005-20231031-12345"]


# --- Ignored items ----------------------------------------


@pytest.mark.parametrize(
    "ignored",
    [
        item("execution_block", "matchesRegex", "m005"),
        item("no.such.field", "contains", "x"),
        item("execution_block", "contains", ""),
        item("execution_block", "isAnyOf", []),
        item("execution_block", "contains", None),
        item("date_created", "after", "not a date"),
        item("obscore.pol_xel", ">", "four"),
        {"operator": "contains", "value": "x"},
        {"field": "execution_block", "value": "x"},
        item("id", "=", 3),
    ],
)
def test_items_that_cannot_apply_are_ignored(anonymous, ignored):
    assert page(anonymous, ignored)["total"] == 12


@pytest.mark.parametrize(
    "field", ["metadata__context__observer", "uid__regex", "search_text__regex", "pk"]
)
def test_orm_lookups_in_field_names_never_reach_the_orm(anonymous, field):
    assert page(anonymous, item(field, "contains", "."))["total"] == 12
    assert page(anonymous, item(field, ">", 0))["total"] == 12


@pytest.mark.parametrize("hostile", ["%", "_", ".*", "'; DROP TABLE dpd_dataproduct; --", "a|b"])
def test_pattern_characters_in_values_are_literal(anonymous, hostile):
    assert page(anonymous, item("execution_block", "contains", hostile))["total"] == 0
    assert DataProduct.objects.count() == 15


# --- Sorting ----------------------------------------


def test_the_default_order_is_newest_first_with_a_deterministic_tie_break(anonymous):
    shown = folders(page(anonymous))
    assert shown[:3] == [
        "eb-largefiletest-20241009-00001",
        "eb-notebook-20240201-54576/ska-sdp/pb-notebookpo-20240201-54576",
        "eb-notebook-20240201-54576/ska-sdp/pb-notebookvr-20240201-54576",
    ]
    assert shown.index("eb-m001-20221212-12345") + 1 == shown.index("eb-m002-20221212-12345")


def test_sorting_by_a_column_ascending(anonymous):
    shown = folders(page(anonymous, sort=[{"field": "execution_block", "sort": "asc"}]))
    assert shown[0] == "eb-largefiletest-20241009-00001"
    assert shown[-1] == "eb-test-20230401-12345"


@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_sorting_by_date_breaks_ties_by_metadata_file_then_uid(anonymous, direction):
    shown = folders(page(anonymous, sort=[{"field": "date_created", "sort": direction}]))
    products = DataProduct.objects.filter(access_group__isnull=True)
    by_date = sorted(products, key=lambda p: (p.metadata_file, str(p.uid)))
    by_date.sort(key=lambda p: p.date_created, reverse=direction == "desc")
    assert shown == [p.dataproduct_file for p in by_date]
    # Two products of 2024-02-01 and two of 2022-12-12: the ties are ordered.
    assert shown.index("eb-m001-20221212-12345") < shown.index("eb-m002-20221212-12345")


def test_sorting_by_a_document_field_puts_missing_values_last(anonymous):
    rows = page(anonymous, sort=[{"field": "context.observer", "sort": "desc"}])["data"]
    observers = [row.get("context.observer") for row in rows]
    present = [o for o in observers if o is not None]
    assert observers[: len(present)] == sorted(present, reverse=True)
    assert all(o is None for o in observers[len(present) :])


@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_a_null_value_sorts_with_the_missing_ones(anonymous, direction):
    # pb-notebookvr's metadata has `pol_xel: null`: its row leaves the field
    # out (reference 4.6), so it sorts last like the rows without the field.
    rows = page(anonymous, sort=[{"field": "obscore.pol_xel", "sort": direction}])["data"]
    values = [row.get("obscore.pol_xel") for row in rows]
    present = [value for value in values if value is not None]
    assert present, "the fixtures have pol_xel values"
    assert values[: len(present)] == sorted(present, reverse=direction == "desc")
    assert all(value is None for value in values[len(present) :])


@pytest.mark.parametrize("start", [0, 3, 5, 10], ids=["first", "straddling", "beyond", "past"])
@pytest.mark.parametrize(
    ("field", "cursor"),
    [
        # No index (a hidden column): the ids of every match are read in
        # order once, by a plain query that parallel workers can share (never
        # a cursor, which PostgreSQL runs in one process), and remembered
        # (dpd.remembered_counts.match_order): a page is read by its ids, and
        # the order's length is the total, no COUNT(*).
        ("config.image", False),
        # A visible column's index: a page among the first matches comes
        # from a cursor over them (which counts them when that is all);
        # a page beyond them is read by itself. COUNT(*) apart.
        ("context.observer", True),
    ],
)
def test_a_sorted_page_beyond_the_first_matches_is_the_same_slice_with_the_same_total(
    anonymous, monkeypatch, start, field, cursor
):
    from dpd import search_rows

    sort = [{"field": field, "sort": "asc"}]
    whole = page(anonymous, sort=sort)
    monkeypatch.setattr(search_rows, "COUNTED_IDS", 4)
    body = {"sortModel": sort, "page": start // 2, "pageSize": 2}
    with CaptureQueriesContext(connection) as queries:
        part = grid(anonymous, body).json()
    assert part["total"] == whole["total"] == 12
    assert folders(part) == folders(whole)[start // 2 * 2 : start // 2 * 2 + 2]
    assert [row["id"] for row in part["data"]] == list(range(start // 2 * 2 + 1, 13))[:2]
    if django_settings.IS_POSTGRESQL:
        # Pages and counts of matches (not the sort field's type lookup).
        reads = [q["sql"] for q in queries.captured_queries]
        reads = [sql for sql in reads if "row_json" in sql or "COUNT(" in sql]
        among_the_first = start // 2 * 2 + 2 <= 4 + 1
        assert any("DECLARE" in sql for sql in reads) is (cursor and among_the_first), reads
        if cursor:
            assert "COUNT(" in reads[-1]
        else:
            assert len(reads) == 1 and '"dpd_dataproduct"."id" IN (' in reads[0], reads


@pytest.mark.parametrize("number", [0, 1, 3], ids=["first", "straddling", "beyond"])
@pytest.mark.parametrize(
    ("text_filter", "one_pass"),
    [
        # Every match passes a test of its text: the page and the total
        # come from one pass over the matches, each rechecked once.
        (item("metadata_file", "contains", "ska-data-product"), True),
        # A negated test: the first matches in display order, COUNT(*) apart.
        (item("metadata_file", "doesNotContain", "no-such-file"), False),
    ],
    ids=["contains", "does-not-contain"],
)
def test_a_text_filter_past_the_first_matches_has_the_same_page_and_total(
    anonymous, monkeypatch, number, text_filter, one_pass
):
    from dpd import search_rows

    whole = page(anonymous, text_filter)
    monkeypatch.setattr(search_rows, "COUNTED_IDS", 4)
    body = {
        "filterModel": {"items": [text_filter], "logicOperator": "and"},
        "page": number,
        "pageSize": 2,
    }
    with CaptureQueriesContext(connection) as queries:
        part = grid(anonymous, body).json()
    assert part["total"] == whole["total"] == 12
    assert folders(part) == folders(whole)[number * 2 : number * 2 + 2]
    assert [row["id"] for row in part["data"]] == [number * 2 + 1, number * 2 + 2]
    if django_settings.IS_POSTGRESQL:
        found = [q["sql"] for q in queries.captured_queries]
        found = [sql for sql in found if "row_json" in sql or "COUNT(" in sql]
        assert (len(found) == 1) is one_pass, found


def test_an_unknown_sort_field_keeps_the_default_order(anonymous):
    unsorted = folders(page(anonymous))
    assert folders(page(anonymous, sort=[{"field": "nope__x", "sort": "asc"}])) == unsorted


# --- Tables, bad bodies, queries ----------------------------------------


def test_accept_csv_gives_the_page_as_a_table(anonymous):
    body = {"page": 0, "pageSize": 3}
    response = grid(anonymous, body, HTTP_ACCEPT="text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["id"] for row in rows] == ["1", "2", "3"]


def test_malformed_json_answers_400_with_a_detail(anonymous):
    response = anonymous.post("/filterdataproducts", "{oops", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        [],
        "text",
        {"filterModel": "x"},
        {"filterModel": {"items": "x"}},
        {"filterModel": {"items": ["x"]}},
        {"page": "first"},
        {"page": -1},
        {"pageSize": 0},
        {"sortModel": {"field": "uid"}},
    ],
)
def test_a_body_of_the_wrong_shape_answers_400_with_a_detail(anonymous, body):
    response = grid(anonymous, body)
    assert response.status_code == 400
    assert response.json()["detail"]


def test_a_twenty_megabyte_body_answers_413_in_json(anonymous):
    body = json.dumps({"filterModel": {"items": [item("uid", "contains", "x" * 20_000_000)]}})
    response = anonymous.post("/filterdataproducts", body, content_type="application/json")
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]


@pytest.mark.parametrize("body", ["", "null"], ids=["empty", "null"])
def test_a_missing_or_null_body_answers_400_with_a_detail(anonymous, body):
    response = anonymous.generic(
        "POST", "/filterdataproducts", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["detail"]


@pytest.mark.parametrize(
    "content_type",
    ["", "text/plain", "application/x-www-form-urlencoded"],
    ids=["none", "text", "form"],
)
def test_a_json_body_is_read_whatever_its_content_type_as_upstream(anonymous, content_type):
    # Upstream reads this body with request.json(): `curl -d '{...}'` works.
    body = json.dumps(
        {
            "filterModel": {"items": [item("execution_block", "contains", "m001-20230921")]},
            "page": 0,
            "pageSize": 5,
        }
    )
    response = anonymous.generic("POST", "/filterdataproducts", body, content_type=content_type)
    assert response.status_code == 200
    assert folders(response.json()) == ["eb-m001-20230921-245"]


def test_a_get_answers_405_with_the_upstream_text(anonymous):
    response = anonymous.get("/filterdataproducts")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}


def test_the_number_of_queries_is_constant(anonymous, member, django_assert_max_num_queries):
    items = [item("execution_block", "contains", "eb"), item("obscore.pol_xel", ">=", 0)]
    page(anonymous, *items)  # warms the field catalogue
    with django_assert_max_num_queries(3):
        page(anonymous, *items, size=2)
    with django_assert_max_num_queries(3):
        page(anonymous, *items, size=100)


def test_a_counted_page_filtered_on_a_metadata_field_reads_the_last_change_once(
    anonymous, monkeypatch, django_assert_num_queries
):
    from dpd import search_rows

    # More matches than the page's reading counts: the total is counted
    # apart and remembered under the catalogue's version, which also tells
    # the field catalogue that it is current (it used to ask again).
    monkeypatch.setattr(search_rows, "COUNTED_IDS", 1)
    items = [item("obscore.instrument_name", "equals", "SKA-LOW")]
    first = page(anonymous, *items, size=1)
    assert first["total"] > 1
    with django_assert_num_queries(2):  # the version, the page
        assert page(anonymous, *items, size=1)["total"] == first["total"]
