"""GET /status over HTTP: the v0.17 shape (reference 2.1)."""

from __future__ import annotations

import datetime as dt
import re
import socket

import pytest
import time_machine
from django.db import connection
from rest_framework.test import APIClient

from dpd.metadata import from_ingested_document
from dpd.models import DataProduct

TOP_LEVEL = {
    "api_running",
    "api_version",
    "startup_time",
    "available_data_stores",
    "indexing",
    "pv_interface_status",
    "metadata_store_status",
    "search_store_status",
    "sdp_config_db",
}


@pytest.fixture
def client() -> APIClient:
    return APIClient()


def status(client: APIClient, path: str = "/status") -> dict:
    response = client.get(path)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    return response.json()


@pytest.mark.usefixtures("indexed_sample")
def test_it_reports_the_v017_shape_with_real_counts(client, settings):
    settings.SDP_ETCD_HOST = ""  # flow enrichment off (it is on by default)
    body = status(client)
    assert set(body) == TOP_LEVEL
    assert body["api_running"] is True
    assert body["api_version"] == settings.SKA_DATAPRODUCT_API_VERSION
    assert dt.datetime.fromisoformat(body["startup_time"]).tzinfo is not None
    assert body["available_data_stores"] == ["shared"]
    # `stalled` is ours (null unless a run stopped heartbeating): an addition.
    assert set(body["indexing"]) == {"in_progress", "progress", "coordination_state", "stalled"}
    assert set(body["indexing"]["progress"]) >= {
        "files_processed",
        "total_files",
        "files_added",
        "files_updated",
        "files_skipped",
        "indexing_step",
    }
    pv = body["pv_interface_status"]
    assert pv["metadata_store_name"] == "shared"
    assert pv["pv_available"] is True
    # 15 products, 3 of them in an access group: /status counts the 12 open to all.
    assert pv["number_of_data_products_on_pv"] == 12
    assert pv["indexing_timeout_seconds"] == settings.INDEXING_TIMEOUT_SECONDS
    for key in (
        "last_index_duration",
        "index_time_modified",
        "indexing_batch_size",
        "indexing_parallel_workers",
        "indexing_work_unit_depth",
        "last_index_run",
    ):
        assert key in pv
    store = body["metadata_store_status"]
    assert store["store_type"] == "Stateless PostgreSQL metadata store"
    assert store["db_status"] == {"configured": True, "running": True}
    database = connection.settings_dict
    assert store["database"] == {
        "engine": "PostgreSQL",
        "host": database["HOST"],
        "port": int(database["PORT"] or 5432),
        "name": database["NAME"],
        "schema": None,
        "configured_by": "DATABASE_URL",
    }
    assert store["number_of_dataproducts"] == 12
    assert "error" not in store
    assert store["dlm_interface_enabled"] is False
    assert store["dlm_interface_status"] == {
        "number_of_items": None,
        "dlm_data_item_accessible": False,
        "dlm_tables_accessible": False,
        "dlm_tables_error": None,
    }
    assert body["search_store_status"] == {
        "metadata_search_store_in_use": "PostgreSQL Search Store"
    }
    assert body["sdp_config_db"]["connected"] is False
    assert body["sdp_config_db"]["watcher_connected"] is False
    assert body["sdp_config_db"]["description"]


@pytest.mark.usefixtures("indexed_sample")
def test_the_trailing_slash_form_answers_the_same(client):
    assert set(status(client, "/status/")) == TOP_LEVEL


def test_an_empty_catalogue_has_no_update_time_and_zero_products(client, db):
    store = status(client)["metadata_store_status"]
    assert store["last_metadata_update_time"] is None
    assert store["number_of_dataproducts"] == 0


@pytest.mark.usefixtures("indexed_sample")
def test_a_removed_product_leaves_the_counts_at_once(client):
    """The counts are remembered while the last change time and the number of
    removals hold (a count reads every row: 55 ms at 100,000 products, on
    every poll); a removal moves no time, but it moves the number."""
    with time_machine.travel(dt.datetime.now(dt.UTC), tick=False):
        assert status(client)["metadata_store_status"]["number_of_dataproducts"] == 12
        oldest = DataProduct.objects.order_by("indexed_at").first()
        oldest.delete()
        body = status(client)
    assert body["metadata_store_status"]["number_of_dataproducts"] == 11
    assert body["pv_interface_status"]["number_of_data_products_on_pv"] == 11


@pytest.mark.usefixtures("indexed_sample")
def test_the_update_time_moves_when_a_product_is_added_or_updated(client):
    before = status(client)["metadata_store_status"]["last_metadata_update_time"]
    product = from_ingested_document({"execution_block": "eb-test-20240806-99999"})
    DataProduct.objects.create(**DataProduct.fields_from(product), source=DataProduct.Source.API)
    added = status(client)["metadata_store_status"]
    assert added["last_metadata_update_time"] > before
    assert added["number_of_dataproducts"] == 13
    # An ingested product is not on the volume.
    assert status(client)["pv_interface_status"]["number_of_data_products_on_pv"] == 12

    row = DataProduct.objects.get(execution_block="eb-m005-20231031-12345")
    row.metadata["context"]["notes"] = "edited"
    row.save()
    updated = status(client)["metadata_store_status"]["last_metadata_update_time"]
    assert updated > added["last_metadata_update_time"]


@pytest.mark.django_db(databases=["default", "dlm"])  # the DLM's probe reads its alias
def test_configured_stores_are_listed_but_report_not_connected(client, db, settings):
    settings.SKA_DATAPRODUCT_DLM_INTERFACE_ENABLED = True
    settings.SDP_ETCD_HOST = "127.0.0.1"
    body = status(client)
    assert body["available_data_stores"] == ["DLM", "SDP", "shared"]
    assert body["metadata_store_status"]["dlm_interface_enabled"] is True
    assert body["sdp_config_db"]["connected"] is False


def test_a_missing_volume_is_reported_unavailable(client, db, settings, tmp_path):
    settings.PERSISTENT_STORAGE_PATH = str(tmp_path / "nowhere")
    assert status(client)["pv_interface_status"]["pv_available"] is False


def test_it_needs_two_queries_and_one_once_the_counts_are_remembered(
    client, db, django_assert_num_queries
):
    # The catalogue's last change with the indexing state, the last run and
    # the SDP watcher's state (dpd.status_rows); then the counts, remembered
    # while that change holds.
    with django_assert_num_queries(2):
        status(client)
    with django_assert_num_queries(1):
        status(client)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.django_db(transaction=True)
def test_with_the_database_down_it_still_answers_200_with_error_markers(client):
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT=str(_closed_port()))
    try:
        body = status(client)
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
    assert body["api_running"] is True
    store = body["metadata_store_status"]
    assert store["db_status"]["running"] is False
    assert store["db_status"]["error"]
    assert store["error"]
    assert store["number_of_dataproducts"] is None
    assert body["search_store_status"]["error"]
    assert set(body) == TOP_LEVEL


# Reference 2.1's example, block by block: the keys the dashboard and probes read.
REFERENCE_KEYS = {
    "progress": {
        "files_processed",
        "total_files",
        "files_added",
        "files_updated",
        "files_skipped",
        "indexing_step",
    },
    "coordination_state": {
        "volume_prefix",
        "indexed_by",
        "indexing_running",
        "started_at",
        "last_heartbeat",
        "completed_at",
        "files_indexed",
    },
    "pv_interface_status": {
        "metadata_store_name",
        "pv_available",
        "number_of_data_products_on_pv",
        "last_index_duration",
        "index_time_modified",
        "indexing_timeout_seconds",
        "indexing_batch_size",
        "indexing_parallel_workers",
        "indexing_work_unit_depth",
        "last_index_run",
    },
    "last_index_run": {"timed_out", "work_units", "files_ingested"},
    "metadata_store_status": {
        "store_type",
        "db_status",
        "last_metadata_update_time",
        "number_of_dataproducts",
        "dlm_interface_enabled",
        "dlm_interface_status",
    },
    "sdp_config_db": {"connected", "watcher_connected", "description"},
}


@pytest.mark.usefixtures("upstream_volume")
def test_after_an_index_run_every_block_has_the_reference_keys_and_real_figures(client, db):
    from indexing.services import request_reindex
    from indexing.tasks import run_requested_index

    run_requested_index(request_reindex("api").run_id)
    body = status(client)
    indexing = body["indexing"]
    assert indexing["in_progress"] is False
    assert set(indexing["progress"]) == REFERENCE_KEYS["progress"]
    assert indexing["progress"]["indexing_step"] == "completed"
    assert indexing["progress"]["total_files"] == 18  # 18 metadata files, 3 invalid
    assert indexing["progress"]["files_added"] == 15
    coordination = indexing["coordination_state"]
    assert set(coordination) == REFERENCE_KEYS["coordination_state"]
    assert coordination["volume_prefix"].startswith("dpd_")
    assert coordination["indexing_running"] is False
    assert coordination["indexed_by"]
    for moment in ("started_at", "last_heartbeat", "completed_at"):
        assert dt.datetime.fromisoformat(coordination[moment]).tzinfo is not None
    pv = body["pv_interface_status"]
    assert set(pv) == REFERENCE_KEYS["pv_interface_status"]
    # str(timedelta), as upstream: "0:00:00.720118".
    assert re.fullmatch(r"\d+:\d{2}:\d{2}(\.\d{6})?", pv["last_index_duration"])
    assert set(pv["last_index_run"]) == REFERENCE_KEYS["last_index_run"]
    assert pv["last_index_run"]["timed_out"] is False
    assert pv["last_index_run"]["files_ingested"] == 15
    # Plus additions of ours (docs/api.md): which database is in use; flows
    # known, revision, last event.
    additions = {"database"}
    assert set(body["metadata_store_status"]) == REFERENCE_KEYS["metadata_store_status"] | additions
    assert set(body["sdp_config_db"]) >= REFERENCE_KEYS["sdp_config_db"]
