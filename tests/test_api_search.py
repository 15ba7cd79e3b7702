"""POST /dataproductsearch over HTTP (reference 2.3, 3.2-3.4, section 7)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from rest_framework.test import APIClient

from dpd.metadata import from_volume_file
from dpd.models import DataProduct
from dpd.search_text import signature

pytestmark = pytest.mark.usefixtures("indexed_sample")

# Section 7: the 12 open products, newest first, ties by metadata_file.
OPEN_IN_ORDER = [
    "eb-largefiletest-20241009-00001",
    "eb-notebook-20240201-54576/ska-sdp/pb-notebookpo-20240201-54576",
    "eb-notebook-20240201-54576/ska-sdp/pb-notebookvr-20240201-54576",
    "eb-m005-20231031-12345",
    "eb-m001-20230921-245",
    "eb-test-20230401-12345",
    "eb-test-20230214-07904",
    "eb-m001-20221212-12345",
    "eb-m002-20221212-12345",
    "eb-test-20200325-00001",
    "eb-m003-20191130-12345",
    "eb-m004-20191031-12345",
]
WIDE = {"start_date": "2001-12-12", "end_date": "2032-12-12"}


@pytest.fixture
def client() -> APIClient:
    return APIClient()


def search(client: APIClient, body, **extra):
    return client.post("/dataproductsearch", body, format="json", **extra)


def folders(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["dataproduct_file"] for row in response.json()]


def test_one_execution_block_gives_that_product_only(client):
    body = {**WIDE, "key_value_pairs": ["execution_block:eb-m001-20221212-12345"]}
    rows = search(client, body).json()
    assert [row["execution_block"] for row in rows] == ["eb-m001-20221212-12345"]
    assert rows[0]["uid"] == "c05bce72-4a6e-234f-06e7-02dc92aba3f4"
    assert rows[0]["metadata_store_name"] == "shared"
    assert rows[0]["id"] == 1


@pytest.mark.parametrize("pairs", [{"key_value_pairs": []}, {}])
def test_a_wide_range_without_pairs_gives_the_twelve_open_products_in_order(client, pairs):
    assert folders(search(client, {**WIDE, **pairs})) == OPEN_IN_ORDER


def test_the_default_dates_give_the_first_ten(client):
    assert folders(search(client, {})) == OPEN_IN_ORDER[:10]


def test_a_pair_without_a_colon_answers_400_with_the_upstream_message(client):
    response = search(client, {"key_value_pairs": ["execution_blockeb-m001-20191031-12345"]})
    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid search key pair."}


def test_the_pair_check_comes_before_the_date_check(client):
    body = {"start_date": "yesterday", "key_value_pairs": ["nocolon"]}
    assert search(client, body).json() == {"detail": "Invalid search key pair."}


def test_a_body_without_content_type_is_read_as_json(client):
    body = json.dumps({**WIDE, "key_value_pairs": ["execution_block:eb-m001-20221212-12345"]})
    response = client.generic("POST", "/dataproductsearch", body, content_type="")
    assert [row["execution_block"] for row in response.json()] == ["eb-m001-20221212-12345"]


def test_unknown_body_fields_are_ignored(client):
    assert folders(search(client, {**WIDE, "colour": "blue"})) == OPEN_IN_ORDER


def test_the_trailing_slash_form_answers_the_same(client):
    response = client.post("/dataproductsearch/", WIDE, format="json")
    assert folders(response) == OPEN_IN_ORDER


# --- Matching semantics (reference 3.3) -------------------------------------


def test_the_key_is_a_substring_of_a_field_name(client):
    # "block" hits execution_block (and config.processing_block) ...
    body = {**WIDE, "key_value_pairs": ["block:eb-m005"]}
    assert folders(search(client, body)) == ["eb-m005-20231031-12345"]
    # ... while "processing_block" does not reach execution_block.
    body = {**WIDE, "key_value_pairs": ["processing_block:eb-m005"]}
    assert folders(search(client, body)) == []


def test_values_are_substrings_of_the_text_of_the_value(client):
    # obscore.pol_xel is the number 4 in #7; "4" is a substring of its text.
    body = {**WIDE, "key_value_pairs": ["pol_xel:4", "execution_block:m005"]}
    assert folders(search(client, body)) == ["eb-m005-20231031-12345"]


def test_matching_is_case_sensitive(client):
    body = {**WIDE, "key_value_pairs": ["execution_block:EB-M005"]}
    assert folders(search(client, body)) == []


def test_list_elements_are_searched_with_their_nested_keys(client):
    # TestDataFile3 is one element's path; the whole list also matches as text.
    by_element = folders(search(client, {**WIDE, "key_value_pairs": ["path:TestDataFile3"]}))
    by_list = folders(search(client, {**WIDE, "key_value_pairs": ["files:TestDataFile2"]}))
    assert "eb-m005-20231031-12345" in by_element
    assert by_element == by_list
    assert "eb-m002-20221212-12345" not in by_element  # it has files 4 to 6


def test_pairs_combine_with_and(client):
    both = ["execution_block:eb-m00", "files:TestDataFile5"]
    assert folders(search(client, {**WIDE, "key_value_pairs": both})) == ["eb-m002-20221212-12345"]


def test_a_zero_value_matches_unlike_upstream(client):
    # Upstream skips falsy values; #17 has crc 00000000, which YAML loads as 0.
    body = {**WIDE, "key_value_pairs": ["crc:0"]}
    assert "eb-test-20230401-12345" in folders(search(client, body))


def test_a_value_keeps_its_second_colon(client):
    text = "\x1econtext.notes\x1fsee http://example.org/x\x1e"
    DataProduct.objects.filter(execution_block="eb-m005-20231031-12345").update(
        search_text=text, search_signature=signature(text)
    )
    body = {**WIDE, "key_value_pairs": ["notes:http://example.org"]}
    assert folders(search(client, body)) == ["eb-m005-20231031-12345"]


@pytest.mark.parametrize("hostile", ["%", "_", ".*", "\\", "(", "[", "'; DROP TABLE x; --", "|"])
def test_pattern_characters_in_pairs_are_literal(client, hostile):
    body = {**WIDE, "key_value_pairs": [f"execution_block:{hostile}"]}
    assert folders(search(client, body)) == []
    assert DataProduct.objects.count() == 15


@pytest.mark.parametrize("key", ["metadata__context__observer", "uid__regex", "pk__gt"])
def test_orm_lookup_syntax_in_keys_is_just_text(client, key):
    assert folders(search(client, {**WIDE, "key_value_pairs": [f"{key}:1"]})) == []


def test_an_empty_key_matches_any_field(client):
    body = {**WIDE, "key_value_pairs": [":AIV_person_1"]}
    assert "eb-m005-20231031-12345" in folders(search(client, body))


def test_access_group_products_are_never_listed(client, django_user_model):
    staff = django_user_model.objects.create_user("boss", is_staff=True)
    client.force_login(staff)
    body = {**WIDE, "key_value_pairs": ["execution_block:eb-orcatest"]}
    assert folders(search(client, body)) == []


# --- Dates (reference 3.2) -----------------------------------------------------


def test_date_bounds_are_inclusive(client):
    body = {"start_date": "2022-12-12", "end_date": "2022-12-12"}
    assert folders(search(client, body)) == [
        "eb-m001-20221212-12345",
        "eb-m002-20221212-12345",
    ]


def test_an_iso_timestamp_bound_counts_by_its_date(client):
    body = {"start_date": "2023-10-31T00:00:00.000Z", "end_date": "2023-10-31T23:59:59"}
    assert folders(search(client, body)) == ["eb-m005-20231031-12345"]


def test_a_range_that_ends_before_it_starts_is_empty(client):
    assert folders(search(client, {"start_date": "2030-01-01", "end_date": "2001-01-01"})) == []


def test_an_empty_bound_is_no_bound(client):
    rows = folders(search(client, {"start_date": "", "end_date": ""}))
    assert rows == OPEN_IN_ORDER


def test_null_fields_are_empty_so_null_dates_are_no_bound(client):
    # Reference 2.3 [rec]: "Treat null as empty", as "" is (3.2).
    body = {"start_date": None, "end_date": None, "key_value_pairs": None}
    assert folders(search(client, body)) == OPEN_IN_ORDER
    assert folders(search(client, {"start_date": None})) == OPEN_IN_ORDER


@pytest.mark.parametrize(
    ("start", "end"),
    [("2022-12-1", "2022-12-31"), ("2022-12-01", "2022-12-31"), ("2022-12- 1", "2023-1-1")],
)
def test_a_date_is_read_as_strptime_reads_y_m_d_padded_or_not(client, start, end):
    # Upstream parses both bounds with %Y-%m-%d (reference 3.2), which takes
    # one-digit months and days: a script's "2022-12-1" meant December 1st.
    assert folders(search(client, {"start_date": start, "end_date": end})) == [
        "eb-m001-20221212-12345",
        "eb-m002-20221212-12345",
    ]


@pytest.mark.parametrize(
    "bad",
    ["2020-13-45", "yesterday", "2020/01/01", "20200101", "2020-1-", "220-01-01", "2020-02-30"],
)
def test_a_date_that_does_not_parse_answers_400_naming_it(client, bad):
    response = search(client, {"start_date": bad})
    assert response.status_code == 400
    assert "start_date" in response.json()["detail"]


# --- Bad bodies ----------------------------------------


def test_malformed_json_answers_422_with_a_detail(client):
    response = client.post("/dataproductsearch", "{not json", content_type="application/json")
    assert response.status_code == 422
    assert "JSON" in response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"start_date": 20200101},
        {"end_date": True},
        {"key_value_pairs": "execution_block:eb"},
        {"key_value_pairs": [1, 2]},
        {"key_value_pairs": [{"a": "b"}]},
        {"start": -1},
        {"count": "many"},
        ["execution_block:eb"],
        "text",
    ],
)
def test_wrong_types_answer_422_with_a_detail(client, body):
    response = search(client, body)
    assert response.status_code == 422
    assert response.json()["detail"]


def test_a_refused_body_leaves_nothing_behind_for_the_next_request(client):
    # One validating serializer serves every request of a process.
    body = {**WIDE, "key_value_pairs": ["execution_block:m001"], "start": 0, "count": 1}
    first = search(client, body)
    refused = search(client, {**WIDE, "key_value_pairs": ["execution_block:m001", 7]})
    again = search(client, body)
    assert refused.status_code == 422
    assert refused.json() == {
        "detail": "key_value_pairs: 1: Not a valid string.",
        "errors": {"key_value_pairs": {"1": ["Not a valid string."]}},
    }
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.json()["total"] == 2


def test_a_null_body_says_no_data_was_provided(client):
    response = client.post("/dataproductsearch", "null", content_type="application/json")
    assert response.status_code == 422
    assert response.json() == {
        "detail": "No data provided",
        "errors": {"non_field_errors": ["No data provided"]},
    }


def test_a_twenty_megabyte_body_answers_413_in_json(client):
    body = json.dumps({"key_value_pairs": ["a:" + "x" * (20 * 1024 * 1024)]})
    response = client.post("/dataproductsearch", body, content_type="application/json")
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]


@pytest.mark.parametrize("content_type", ["application/json", ""], ids=["json", "none"])
def test_a_request_without_a_body_answers_422_as_upstream(client, content_type):
    # {} is the way to ask for the defaults; no body at all is a model error upstream.
    response = client.generic("POST", "/dataproductsearch", "", content_type=content_type)
    assert response.status_code == 422
    assert response.json()["detail"] == "The request body is missing; send a JSON object."


@pytest.mark.parametrize(
    ("content_type", "sent"),
    [
        ("text/plain", "text/plain"),
        ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded"),
    ],
    ids=["text", "form"],
)
def test_a_body_declared_as_text_or_form_answers_422_in_json(client, content_type, sent):
    response = client.generic(
        "POST", "/dataproductsearch", json.dumps(WIDE), content_type=content_type
    )
    assert response.status_code == 422
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"] == (
        f"The request body must be JSON (Content-Type application/json, or none), not {sent}."
    )


def test_a_get_answers_405_with_the_upstream_text(client):
    response = client.get("/dataproductsearch")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}


# --- Paging, cap, CSV ----------------------------------------


def test_without_paging_the_list_is_capped(client, settings):
    settings.SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT = 5
    assert folders(search(client, WIDE)) == OPEN_IN_ORDER[:5]


def test_start_and_count_give_a_page_with_total_and_more_results(client):
    page = search(client, {**WIDE, "start": 3, "count": 4}).json()
    assert [row["dataproduct_file"] for row in page["data"]] == OPEN_IN_ORDER[3:7]
    assert [row["id"] for row in page["data"]] == [4, 5, 6, 7]
    assert page["total"] == 12
    assert page["more_results"] is True


def test_offset_and_limit_are_the_same_paging(client):
    page = search(client, {**WIDE, "offset": 10, "limit": 5}).json()
    assert [row["dataproduct_file"] for row in page["data"]] == OPEN_IN_ORDER[10:]
    assert page["total"] == 12
    assert page["more_results"] is False


def test_the_page_size_is_capped_by_the_server(client, settings):
    settings.SEARCH_MAX_PAGE_SIZE = 2
    page = search(client, {**WIDE, "start": 0, "count": 1000}).json()
    assert len(page["data"]) == 2
    assert page["more_results"] is True


def test_accept_csv_gives_the_rows_as_a_table(client):
    response = search(client, WIDE, HTTP_ACCEPT="text/csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["dataproduct_file"] for row in rows] == OPEN_IN_ORDER
    assert json.loads(rows[0]["files"]) == search(client, WIDE).json()[0]["files"]


def test_accept_tsv_gives_tab_separated_rows(client):
    body = {**WIDE, "start": 0, "count": 2}
    response = search(client, body, HTTP_ACCEPT="text/tab-separated-values")
    lines = response.content.decode().splitlines()
    assert len(lines) == 3
    assert "execution_block" in lines[0].split("\t")


def test_the_number_of_queries_does_not_grow_with_the_rows(client, django_assert_num_queries):
    with django_assert_num_queries(1):
        search(client, WIDE)
    # Paged: the page and, up to 1,000 matches, the total (PostgreSQL: one
    # cursor over the matches; elsewhere one read of the matches' rows).
    with django_assert_num_queries(1):
        search(client, {**WIDE, "start": 0, "count": 5})
    with django_assert_num_queries(1):
        search(client, {**WIDE, "start": 0, "count": 50})


def test_past_a_thousand_matches_the_total_is_counted(
    client, django_assert_num_queries, monkeypatch
):
    from dpd import search_rows

    monkeypatch.setattr(search_rows, "COUNTED_IDS", 4)
    # The first matches (the page among them), the last change time, COUNT(*).
    with django_assert_num_queries(3):
        page = search(client, {**WIDE, "start": 2, "count": 3}).json()
    assert page["total"] == 12
    assert [row["id"] for row in page["data"]] == [3, 4, 5]
    # A page beyond the ids read: the page itself, then the total.
    page = search(client, {**WIDE, "start": 6, "count": 3}).json()
    assert [row["dataproduct_file"] for row in page["data"]] == OPEN_IN_ORDER[6:9]
    assert (page["total"], page["more_results"]) == (12, True)


@pytest.mark.parametrize(
    ("start", "count", "total", "more"),
    [
        (0, 50, 12, False),
        (10, 5, 12, False),
        (5, 5, 12, True),
        (12, 5, 12, False),
        (40, 5, 12, False),
    ],
    ids=["one-short-page", "last-short-page", "full-page", "just-past-the-end", "far-past-the-end"],
)
def test_the_total_is_right_on_every_kind_of_page(client, start, count, total, more):
    page = search(client, {**WIDE, "start": start, "count": count}).json()
    assert page["total"] == total
    assert page["more_results"] is more
    assert len(page["data"]) == max(0, min(count, total - start))


def test_the_reference_example_row_comes_out_field_by_field(client, indexed_sample):
    # Reference 2.3's row was indexed under the Helm root /mnt/data/product.
    relative = "eb-m005-20231031-12345/ska-data-product.yaml"
    product = from_volume_file(
        (indexed_sample / relative).read_bytes(),
        configured_root="/mnt/data/product",
        relative_metadata_file=relative,
    )
    DataProduct.objects.filter(metadata_file=relative).delete()
    DataProduct.objects.create(**DataProduct.fields_from(product))
    body = {**WIDE, "key_value_pairs": ["execution_block:eb-m005-20231031-12345"]}
    (row,) = search(client, body).json()
    expected = {
        "interface": "http://schema.skao.int/ska-data-product-meta/0.1",
        "execution_block": "eb-m005-20231031-12345",
        "context.observer": "AIV_person_1",
        "context.intent": "Experimental run as part of XYZ-123",
        "config.processing_block": "pb-m004-20191031-12345",
        "config.processing_script": "receive",
        "config.version": "0.1.3",
        "obscore.dataproduct_type": "MS",
        "obscore.instrument_name": "SKA-LOW",
        "obscore.pol_xel": 4,
        "date_created": "2023-10-31",
        "dataproduct_file": "eb-m005-20231031-12345",
        "metadata_file": "eb-m005-20231031-12345/ska-data-product.yaml",
        "metadata_store_name": "shared",
        "uid": "1eee8638-3333-9879-a090-535cea4a091b",
        "id": 1,
    }
    assert {key: row.get(key) for key in expected} == expected
    assert row["files"][0] == {
        "crc": "2a890fbe",
        "description": "This is test file 1",
        "path": "ska-sub-system/scan_id_1/pb_id_1/TestDataFile1.txt",
        "size": 19,
        "status": "done",
    }
    assert len(row["files"]) == 3
    assert row["context.notes"].startswith("Running that signal")


@pytest.mark.parametrize("method", ["get", "post"])
def test_the_removed_dataproductlist_endpoint_is_not_served(client, method):
    # Gone since v0.9 (reference 0): a JSON 404, never a list.
    response = getattr(client, method)("/dataproductlist")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}
