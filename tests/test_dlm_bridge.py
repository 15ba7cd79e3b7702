"""DLM items beside volume products: the DLM's own schema (dlm-schema.sql) in
the test database, read as each of its reader roles, mirrored into the
catalogue and served by the API (issue 19; reference dlm-sdp.md 1)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.db import DatabaseError, connections
from rest_framework.test import APIClient

from dlm_bridge import probe
from dlm_bridge.models import DataItem
from dlm_bridge.router import DlmReadOnly
from dlm_bridge.sync import sync_items
from dpd.metadata import from_ingested_document
from dpd.models import DataProduct
from tests import dlm_support as dlm
from tests.dlm_support import (
    CONTAINER,
    EXPIRED,
    FULL,
    ITEMS_ONLY,
    LISTED,
    MIGRATED,
    MINIMAL,
    NO_ACCESS,
    NO_STORAGE,
    ON_S3,
)
from tests.test_home_page import table as home_table

pytestmark = pytest.mark.django_db(databases=["default", "dlm"])

ENRICHMENT = (
    "storage_name",
    "storage_type",
    "storage_interface",
    "location_name",
    "location_type",
    "location_country",
    "location_city",
    "location_facility",
    "item_state",
)


@pytest.fixture(scope="session")
def dlm_schema(django_db_setup, django_db_blocker):
    """dlm-schema.sql in the test database (it drops schema dlm first)."""
    with django_db_blocker.unblock():
        dlm.load_schema(connections["default"].settings_dict)
    yield
    connections["dlm"].close()  # or the test database cannot be dropped


@pytest.fixture
def dlm_on(dlm_schema, settings):
    settings.SKA_DATAPRODUCT_DLM_INTERFACE_ENABLED = True
    settings.DLM_PROBE_SECONDS = 0  # every request probes: outages show at once
    probe.forget()
    yield
    probe.forget()


@pytest.fixture
def synced(dlm_on):
    with dlm.as_role(FULL):
        result = sync_items()
        assert result.error == ""
        yield result


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


@pytest.fixture
def member(db) -> APIClient:
    user = User.objects.create_user("dlm-member")
    user.groups.add(Group.objects.create(name="dlm-team"))
    client = APIClient()
    client.force_login(user)
    return client


def grid(client: APIClient, *items, panel=(), sort=(), size=100) -> dict:
    body = {
        "filterModel": {"items": list(items), "logicOperator": "and"},
        "searchPanelOptions": {"items": list(panel), "logicOperator": "and"},
        "sortModel": list(sort),
        "page": 0,
        "pageSize": size,
    }
    response = client.post("/filterdataproducts", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def rows_by_uid(result: dict | list) -> dict[str, dict]:
    rows = result["data"] if isinstance(result, dict) else result
    return {row["uid"]: row for row in rows}


def metadata(client: APIClient, uid: str):
    return client.post("/dataproductmetadata", {"uid": uid}, format="json")


def dlm_status(client: APIClient) -> dict:
    return client.get("/status").json()["metadata_store_status"]


# --- The three access cases -------------------------------------------------------


def test_a_full_reader_lists_the_items_with_where_each_copy_lives(synced, anonymous):
    with dlm.as_role(FULL):
        rows = rows_by_uid(grid(anonymous))
        status = dlm_status(anonymous)
        stores = anonymous.get("/status").json()["available_data_stores"]
    assert set(rows) == LISTED
    assert {rows[uid]["metadata_store_name"] for uid in LISTED} == {"DLM"}
    assert rows[CONTAINER]["storage_name"] == "sdp-shared-pvc"
    assert status["dlm_interface_enabled"] is True
    assert status["dlm_interface_status"]["dlm_data_item_accessible"] is True
    assert status["dlm_interface_status"]["dlm_tables_accessible"] is True
    assert status["dlm_interface_status"]["dlm_tables_error"] is None
    assert status["dlm_interface_status"]["number_of_items"] == 9  # every data_item row
    assert "DLM" in stores


def test_an_items_only_reader_lists_the_items_without_enrichment(dlm_on, anonymous):
    with dlm.as_role(ITEMS_ONLY):
        assert sync_items().error == ""
        rows = rows_by_uid(grid(anonymous))
        status = dlm_status(anonymous)["dlm_interface_status"]
    assert set(rows) == LISTED
    assert all("storage_name" not in rows[uid] for uid in LISTED)
    assert rows[CONTAINER]["item_state"] == "READY"
    assert status["dlm_data_item_accessible"] is True
    assert status["dlm_tables_accessible"] is False
    assert "permission denied for table" in status["dlm_tables_error"]
    assert "storage" in status["dlm_tables_error"]


def test_a_role_without_select_on_data_item_disables_the_dlm(synced, anonymous):
    with dlm.as_role(NO_ACCESS):
        rows = rows_by_uid(grid(anonymous))
        status = dlm_status(anonymous)["dlm_interface_status"]
        result = sync_items()
    assert not set(rows) & LISTED
    assert status["dlm_data_item_accessible"] is False
    assert status["number_of_items"] is None
    assert "not readable" in status["dlm_tables_error"]
    # The mirror is emptied: nothing of the DLM is kept for an instance that may not read it.
    assert result.items == 0
    assert not DataProduct.objects.filter(source__startswith="dlm").exists()


def test_with_the_interface_off_status_reports_it_and_a_sync_removes_the_rows(
    synced, anonymous, settings
):
    settings.SKA_DATAPRODUCT_DLM_INTERFACE_ENABLED = False
    sync_items()  # as the service's start does (dlm_bridge.tasks.prepare_background_work)
    rows = rows_by_uid(grid(anonymous))
    status = dlm_status(anonymous)
    assert not set(rows) & LISTED
    assert status["dlm_interface_enabled"] is False
    assert "DLM" not in anonymous.get("/status").json()["available_data_stores"]


# --- Rows -----------------------------------------------------------------------------


def test_every_enrichment_field_is_in_the_metadata_and_the_row(synced, anonymous):
    with dlm.as_role(FULL):
        document = metadata(anonymous, ON_S3).json()
        row = rows_by_uid(grid(anonymous))[ON_S3]
    expected = {
        "storage_name": "Acacia",
        "storage_type": "objectstore",
        "storage_interface": "s3",
        "location_name": "Pawsey-Kensington",
        "location_type": "low-operations",
        "location_country": "AU",
        "location_city": "Perth",
        "location_facility": "Pawsey Centre",
        "item_state": "INITIALISED",
    }
    assert {name: document[name] for name in ENRICHMENT} == expected
    assert {name: row[name] for name in ENRICHMENT} == expected
    assert document["metadata_store_name"] == "DLM"
    assert document["uid"] == ON_S3
    assert document["execution_block"] == "eb-m002-20260116-00001"
    assert document["date_created"] == "2026-01-16"
    assert document["config"]["processing_script"] == "pointing-offset"


def test_deleted_and_expired_items_are_hidden_unless_a_filter_asks_for_them(synced, anonymous):
    with dlm.as_role(FULL):
        default = rows_by_uid(grid(anonymous))
        asked = rows_by_uid(
            grid(anonymous, {"field": "item_state", "operator": "equals", "value": "EXPIRED"})
        )
        searched = anonymous.post(
            "/dataproductsearch",
            {"start_date": "2000-01-01", "key_value_pairs": ["item_state:EXPIRED"]},
            format="json",
        ).json()
        found = metadata(anonymous, EXPIRED)
    assert EXPIRED not in default
    assert set(asked) == {EXPIRED}
    assert [row["uid"] for row in searched] == [EXPIRED]
    assert found.status_code == 200  # a uid is looked up whatever its state
    assert found.json()["execution_block"] == "eb-m001-20191031-12345"  # minimal metadata


def test_a_migrated_copy_is_its_own_row_showing_where_it_is(synced, anonymous):
    with dlm.as_role(FULL):
        rows = rows_by_uid(grid(anonymous))
    original, copy = rows[CONTAINER], rows[MIGRATED]
    assert original["dlm_oid"] == copy["dlm_oid"] == CONTAINER
    assert (original["storage_name"], copy["storage_name"]) == ("sdp-shared-pvc", "dlm-archive")
    assert original["execution_block"] == copy["execution_block"]


def test_an_item_without_storage_has_no_enrichment_and_its_access_group_applies(
    synced, anonymous, member
):
    with dlm.as_role(FULL):
        hidden = rows_by_uid(grid(anonymous))
        seen = rows_by_uid(grid(member))
        refused = metadata(anonymous, NO_STORAGE)
        document = metadata(member, NO_STORAGE).json()
        downloaded = anonymous.post("/download", {"uid": NO_STORAGE}, format="json")
    assert NO_STORAGE not in hidden
    assert NO_STORAGE in seen
    assert refused.status_code == 404
    assert downloaded.status_code == 404
    assert "Data Lifecycle Manager" not in downloaded.json()["detail"]  # not even that it exists
    assert document["storage_name"] is None and document["location_name"] is None
    assert "storage_name" not in seen[NO_STORAGE]


def test_minimal_metadata_without_a_date_is_dated_by_the_copys_creation(synced, anonymous):
    created = DataItem.objects.get(uid=MINIMAL).uid_creation.date()
    with dlm.as_role(FULL):
        row = rows_by_uid(grid(anonymous))[MINIMAL]
    assert row["date_created"] == created.isoformat()
    assert row["execution_block"] == "eb-nodate"


def test_key_value_search_date_range_store_filter_and_sort_work_on_dlm_rows(synced, anonymous):
    with dlm.as_role(FULL):
        by_storage = anonymous.post(
            "/dataproductsearch",
            {"start_date": "2026-01-01", "key_value_pairs": ["storage_name:Acacia"]},
            format="json",
        ).json()
        by_store = rows_by_uid(
            grid(anonymous, {"field": "metadata_store_name", "operator": "equals", "value": "DLM"})
        )
        by_country = rows_by_uid(
            grid(anonymous, {"field": "location_country", "operator": "equals", "value": "uk"})
        )
        sorted_rows = grid(anonymous, sort=[{"field": "storage_name", "sort": "asc"}])["data"]
    assert [row["uid"] for row in by_storage] == [ON_S3]
    assert set(by_store) == LISTED
    assert set(by_country) == {CONTAINER, MIGRATED}
    names = [row["storage_name"] for row in sorted_rows if "storage_name" in row]
    assert names == sorted(names)


def test_a_download_of_a_dlm_item_is_a_404_saying_where_it_is(synced, anonymous):
    with dlm.as_role(FULL):
        response = anonymous.post("/download", {"uid": ON_S3}, format="json")
        by_eb = anonymous.post(
            "/download", {"execution_block": "eb-m002-20260116-00001"}, format="json"
        )
    assert response.status_code == 404
    assert "Data Lifecycle Manager" in response.json()["detail"]
    assert "Acacia (Pawsey-Kensington)" in response.json()["detail"]
    assert by_eb.status_code == 404


def test_a_volume_product_shows_the_dlm_copies_of_its_execution_block(synced, anonymous):
    product = from_ingested_document(
        {"execution_block": "eb-m001-20260115-00003", "context": {"intent": "on the volume"}}
    )
    volume = DataProduct.objects.create(**DataProduct.fields_from(product))
    with dlm.as_role(FULL):
        document = metadata(anonymous, str(volume.uid)).json()
    copies = {copy["uid"]: copy for copy in document["dlm_copies"]}
    assert set(copies) == {CONTAINER, MIGRATED}
    assert copies[MIGRATED]["storage_name"] == "dlm-archive"
    assert copies[MIGRATED]["location_city"] == "Didcot"


def test_a_sync_with_nothing_changed_writes_nothing(synced):
    with dlm.as_role(FULL):
        again = sync_items()
    assert (again.written, again.removed) == (0, 0)
    assert again.items == synced.items


def test_a_page_costs_the_same_queries_whatever_its_size(
    synced, anonymous, django_assert_num_queries, settings
):
    settings.DLM_PROBE_SECONDS = 3600
    with dlm.as_role(FULL):
        grid(anonymous, size=1)  # probe, field catalogue and session warm
        with django_assert_num_queries(1) as small:
            grid(anonymous, size=1)
        with django_assert_num_queries(len(small.captured_queries)):
            grid(anonymous, size=50)


# --- The DLM is never written ----------------------------------------------------------


def test_the_dlm_tables_refuse_every_write(synced):
    item = DataItem.objects.get(uid=ON_S3)
    with pytest.raises(DlmReadOnly):
        item.save()
    with pytest.raises(DlmReadOnly):
        DataItem.objects.filter(uid=ON_S3).delete()
    with pytest.raises(DatabaseError), connections["dlm"].cursor() as cursor:
        cursor.execute("DELETE FROM dlm.data_item")  # the connection is read-only
    connections["dlm"].close()
    call_command("flush", database="dlm", interactive=False, verbosity=0)  # flushes nothing
    with pytest.raises(DatabaseError):  # the migration record cannot be written either
        call_command("migrate", "dlm_bridge", "zero", database="dlm", verbosity=0)
    connections["dlm"].close()
    assert DataItem.objects.count() == 9


# --- The DLM database going away ---------------------------------------------------------


def test_the_dlm_database_stopping_empties_the_dlm_part_and_it_comes_back(
    dlm_on, anonymous, tmp_path
):
    """A throwaway PostgreSQL holds the DLM: stopped, searches answer 200
    without its rows and /status says why; started again, they are back,
    without a restart or a new sync."""
    from tests.service_processes import ThrowawayPostgres

    server = ThrowawayPostgres()
    try:
        target = {"HOST": "127.0.0.1", "PORT": server.port, "NAME": "dpd", "USER": "postgres"}
        dlm.load_schema({**target, "PASSWORD": ""})
        volume = DataProduct.objects.create(
            **DataProduct.fields_from(
                from_ingested_document({"execution_block": "eb-vol-20260101-1"})
            )
        )
        with dlm.dlm_connection(**target, PASSWORD=""):
            assert sync_items().error == ""
            before = rows_by_uid(grid(anonymous))
            server.stop()
            during = rows_by_uid(grid(anonymous))
            searched = anonymous.post("/dataproductsearch", {}, format="json")
            status = dlm_status(anonymous)["dlm_interface_status"]
            gone = metadata(anonymous, ON_S3).status_code
            sync_during = sync_items()
            server.start()
            after = rows_by_uid(grid(anonymous))
    finally:
        server.destroy()
    assert set(before) >= LISTED
    assert set(during) == {str(volume.uid)}
    assert searched.status_code == 200
    assert {row["uid"] for row in searched.json()} == {str(volume.uid)}
    assert status["dlm_data_item_accessible"] is False
    assert status["dlm_database_reachable"] is False
    assert "unreachable" in status["dlm_tables_error"]
    assert gone == 404
    assert "unreachable" in sync_during.error
    assert set(after) == set(before)


def test_the_product_page_shows_the_dlm_copies_and_a_dlm_items_storage(synced, member):
    product = from_ingested_document({"execution_block": "eb-m001-20260115-00003"})
    volume = DataProduct.objects.create(**DataProduct.fields_from(product))
    page = member.get(volume.get_absolute_url()).content.decode()
    dlm_page = member.get(DataProduct.objects.get(uid=ON_S3).get_absolute_url()).content.decode()
    assert "Copies in the Data Lifecycle Manager" in page
    assert "dlm-archive" in page and "sdp-shared-pvc" in page
    assert "Held by the Data Lifecycle Manager: Acacia (Pawsey-Kensington)" in dlm_page


def test_the_product_page_shows_no_dlm_copy_while_the_dlm_cannot_be_read(synced, member):
    """As /dataproductmetadata: the DLM part is empty while it does not
    answer, and the page says why instead of showing copies as last synced."""
    product = from_ingested_document({"execution_block": "eb-m001-20260115-00003"})
    volume = DataProduct.objects.create(**DataProduct.fields_from(product))
    item = DataProduct.objects.get(uid=ON_S3)
    with dlm.as_role(NO_ACCESS):
        page = member.get(volume.get_absolute_url()).content.decode()
        dlm_page = member.get(item.get_absolute_url())
        copies = metadata(member, str(volume.uid)).json().get("dlm_copies")
    assert "Copies in the Data Lifecycle Manager" not in page
    assert "dlm-archive" not in page
    assert "The Data Lifecycle Manager does not answer now" in page
    assert copies is None
    assert dlm_page.status_code == 503
    assert "The Data Lifecycle Manager does not answer now" in dlm_page.content.decode()


def test_the_admin_lists_dlm_items_read_only_with_their_storage_and_location(synced):
    staff = User.objects.create_superuser("dlm-curator", password="x")
    client = APIClient()
    client.force_login(staff)
    listing = client.get("/admin/dlm_bridge/dataitem/?item_state__exact=READY")
    page = listing.content.decode()
    assert listing.status_code == 200
    assert "sdp-shared-pvc" in page and "STFC-RAL" in page
    assert "test_item" not in page  # EXPIRED, filtered out
    assert client.get("/admin/dlm_bridge/dataitem/add/").status_code == 403
    detail = client.get(f"/admin/dlm_bridge/dataitem/{ON_S3}/change/")
    assert detail.status_code == 200
    assert client.post(f"/admin/dlm_bridge/dataitem/{ON_S3}/delete/").status_code == 403
    assert client.post(f"/admin/dlm_bridge/dataitem/{ON_S3}/change/").status_code == 403
    assert DataItem.objects.filter(uid=ON_S3).exists()


def test_a_service_start_declares_the_sync_schedule_and_queues_a_sync(dlm_on, settings):
    from django_q.models import OrmQ, Schedule

    from dlm_bridge.tasks import SCHEDULE_NAME, SYNC_TASK, prepare_background_work, sync_dlm

    settings.DLM_SYNC_MINUTES = 2
    lines = prepare_background_work()
    schedule = Schedule.objects.get(name=SCHEDULE_NAME)
    assert (schedule.func, schedule.minutes) == (SYNC_TASK, 2)
    assert OrmQ.objects.count() == 1
    assert "every 2 min" in lines[0]
    with dlm.as_role(FULL):
        assert sync_dlm().startswith(
            f"items={len(LISTED) + 2}"
        )  # + the deleted/expired one, + private


def test_a_service_start_with_the_dlm_off_removes_its_rows_and_schedule(synced, settings):
    from django_q.models import Schedule

    from dlm_bridge.tasks import SCHEDULE_NAME, prepare_background_work

    Schedule.objects.create(name=SCHEDULE_NAME, func="dlm_bridge.tasks.sync_dlm")
    settings.SKA_DATAPRODUCT_DLM_INTERFACE_ENABLED = False
    prepare_background_work()
    assert not Schedule.objects.filter(name=SCHEDULE_NAME).exists()
    assert not DataProduct.objects.filter(source__startswith="dlm").exists()


# --- The home page ------------------------------------------------------------------


def test_the_home_page_counts_the_dlm_copies_one_may_see_by_location(synced, anonymous, member):
    with dlm.as_role(FULL):
        expected = {}
        for caller in (anonymous, member):
            rows = grid(caller)["data"]
            locations = [row.get("location_name") or "(not given)" for row in rows]
            expected[caller] = {name: locations.count(name) for name in set(locations)}
        pages = {caller: caller.get("/").content.decode() for caller in (anonymous, member)}
    # Every row of the grid is a DLM copy here: the tables count what it lists,
    # so never the deleted or expired items, and the access group's only for members.
    for caller, page in pages.items():
        assert home_table(page, "dlm-by-location") == expected[caller]
        stores = home_table(page, "by-store")
        assert stores == {"DLM (copies)": sum(expected[caller].values())}
        assert 'data-count="0"' in page  # copies are not counted as products
    assert expected[member]["(not given)"] == expected[anonymous].get("(not given)", 0) + 1
    assert sum(expected[anonymous].values()) == len(LISTED)


def test_the_home_page_counts_no_dlm_copy_while_the_dlm_cannot_be_read(synced, anonymous):
    with dlm.as_role(NO_ACCESS):
        page = anonymous.get("/").content.decode()
    assert "No DLM copies you may see." in page
    assert "DLM (copies)" not in page
