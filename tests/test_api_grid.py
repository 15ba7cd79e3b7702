"""GET /muidatagridconfig, /{lng}/humanreadable and /layout (reference 2.5-2.7)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from dpd.metadata import from_ingested_document
from dpd.models import DataProduct

FIXED = [
    ("execution_block", "Execution Block", 250),
    ("date_created", "Date Created", 150),
    ("config.processing_block", "Processing Block", 250),
    ("config.processing_script", "Processing script", 150),
    ("context.observer", "Observer", 150),
    ("context.intent", "Intent", 150),
    ("context.notes", "Notes", 500),
    ("size", "File size", 80),
    ("status", "Status", 80),
]


@pytest.fixture
def client() -> APIClient:
    return APIClient()


def columns(client: APIClient) -> list[dict]:
    response = client.get("/muidatagridconfig")
    assert response.status_code == 200
    return response.json()["columns"]


@pytest.mark.usefixtures("indexed_sample")
def test_the_nine_fixed_columns_come_first_and_visible(client):
    first = columns(client)[:9]
    assert [(c["field"], c["headerName"], c["width"]) for c in first] == FIXED
    assert all(c["hide"] is False for c in first)
    assert first[1]["type"] == "date"


@pytest.mark.usefixtures("indexed_sample")
def test_every_other_catalogue_field_follows_hidden_and_typed(client):
    rest = {c["field"]: c for c in columns(client)[9:]}
    for field in (
        "obscore.pol_xel",
        "files",
        "uid",
        "dataproduct_file",
        "metadata_file",
        "metadata_store_name",
        "config.version",
        "obscore.target_name",
    ):
        assert rest[field]["hide"] is True
    assert rest["obscore.pol_xel"]["type"] == "number"
    assert rest["obscore.target_name"]["type"] == "string"
    assert rest["files"]["filterable"] is False
    assert rest["uid"]["filterable"] is False
    assert rest["id"]["filterable"] is False
    assert rest["config.version"]["filterable"] is True
    # Open and hidden products alike shape the columns, never their values.
    assert "context.access_group" in rest


@pytest.mark.usefixtures("indexed_sample")
def test_the_column_order_is_deterministic(client):
    assert columns(client) == columns(client)


@pytest.mark.usefixtures("indexed_sample")
def test_a_new_field_appears_as_soon_as_a_product_carries_it(client):
    assert "context.shiny_new_key" not in {c["field"] for c in columns(client)}
    product = from_ingested_document(
        {"execution_block": "eb-test-20240806-99999", "context": {"shiny_new_key": 1.5}}
    )
    DataProduct.objects.create(**DataProduct.fields_from(product), source=DataProduct.Source.API)
    fields = {c["field"]: c for c in columns(client)}
    assert fields["context.shiny_new_key"]["type"] == "number"


def _add_product(execution_block: str, context: dict) -> DataProduct:
    product = from_ingested_document({"execution_block": execution_block, "context": context})
    return DataProduct.objects.create(
        **DataProduct.fields_from(product), source=DataProduct.Source.API
    )


def _field_types(client: APIClient) -> dict[str, str]:
    return {c["field"]: c["type"] for c in columns(client)}


@pytest.mark.usefixtures("indexed_sample")
def test_after_a_change_only_the_recently_indexed_products_are_read(client):
    columns(client)
    _add_product("eb-test-20240806-99999", {"shiny_new_key": 1.5})
    with CaptureQueriesContext(connection) as captured:
        assert _field_types(client)["context.shiny_new_key"] == "number"
    reads = [q["sql"] for q in captured.captured_queries if "field_types" in q["sql"]]
    assert len(reads) == 1
    assert "indexed_at" in reads[0]  # through the indexed_at index, not the whole table


@pytest.mark.usefixtures("indexed_sample")
def test_a_field_with_two_types_in_two_products_is_a_string_column(client):
    _add_product("eb-test-20240806-99999", {"mixed": 1.5})
    assert _field_types(client)["context.mixed"] == "number"
    _add_product("eb-test-20240807-99999", {"mixed": "high"})
    assert _field_types(client)["context.mixed"] == "string"


@pytest.mark.usefixtures("indexed_sample")
def test_a_removed_products_field_leaves_the_columns_within_the_hour(client):
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    with time_machine.travel(start, tick=False) as clock:
        gone = _add_product("eb-test-20240806-99999", {"only_here": 1})
        assert "context.only_here" in _field_types(client)
        gone.delete()
        clock.shift(dt.timedelta(minutes=1))
        _add_product("eb-test-20240807-99999", {})
        assert "context.only_here" in _field_types(client)  # harmless until the full read
        clock.shift(dt.timedelta(hours=1, minutes=1))
        _add_product("eb-test-20240808-99999", {})
        assert "context.only_here" not in _field_types(client)


def test_an_empty_catalogue_still_lists_the_fixed_columns(client, db):
    assert [c["field"] for c in columns(client)[:9]] == [f for f, _, _ in FIXED]


@pytest.mark.usefixtures("indexed_sample")
def test_the_grid_config_needs_few_queries(client, django_assert_max_num_queries):
    columns(client)
    with django_assert_max_num_queries(1):  # the freshness probe; the rest is cached
        columns(client)


@pytest.mark.parametrize("lng", ["en", "fr", "en-GB", "zh_Hans"])
def test_labels_answer_for_any_language_code(client, lng):
    response = client.get(f"/{lng}/humanreadable")
    assert response.status_code == 200
    body = response.json()
    assert body["execution_block"] == "Execution Block"
    assert body["date_created"] == "Date Created"
    assert body["dataproduct_file"] == "Data Product File"
    assert body["metadata_file"] == "Metadata File"
    assert body["_tooltip"]["execution_block"] == (
        "Unique identifier for the execution block that produced this data product."
    )
    for derived in ("uid", "metadata_store_name", "obscore.s_ra"):
        assert derived in body


def test_a_language_code_with_a_path_in_it_is_a_json_404(client):
    response = client.get("/..%2Fetc/humanreadable")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


def test_the_legacy_layout_is_served(client):
    response = client.get("/layout")
    assert response.status_code == 200
    assert response.json() == [
        {"name": "execution_block", "width": 250},
        {"name": "date_created", "width": 150},
        {"name": "observer", "width": 150},
        {"name": "processing_block", "width": 250},
        {"name": "Intent", "width": 300},
        {"name": "notes", "width": 500},
        {"name": "file_size", "width": 80},
        {"name": "status", "width": 80},
    ]
