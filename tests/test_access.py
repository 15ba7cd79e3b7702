"""Visibility rules: who sees which product, on every endpoint that shows one.

A product with `context.access_group` exists only for members of that group
and for staff; to everyone else it answers exactly like a missing product.
Personas here are Django users with sessions (the admin, the pages); the
other ways in are in test_authentication.py and test_security_table.py.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from dpd import metadata
from dpd.models import DataProduct
from tests.access_support import OTHER, TEAM, catalogue

pytestmark = pytest.mark.django_db


@pytest.fixture
def products(sample_volume, settings):
    return catalogue(sample_volume, settings.PERSISTENT_STORAGE_PATH)


def session(username: str, *groups: str, is_staff: bool = False) -> APIClient:
    user = User.objects.create_user(username, email=f"{username}@skao.int", is_staff=is_staff)
    user.groups.set([Group.objects.get_or_create(name=group)[0] for group in groups])
    client = APIClient()
    client.force_login(user)
    return client


def metadata_status(client: APIClient, product) -> int:
    return client.post("/dataproductmetadata", {"uid": str(product.uid)}, format="json").status_code


def visible_keys(client: APIClient, products) -> set[str]:
    return {key for key, product in products.items() if metadata_status(client, product) == 200}


def listed_uids(client: APIClient) -> set[str]:
    response = client.post("/filterdataproducts", {}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    rows = body["data"] if isinstance(body, dict) else body
    return {row["uid"] for row in rows}


def test_anonymous_callers_see_open_products_only(products):
    assert visible_keys(APIClient(), products) == {"open"}


def test_a_group_member_sees_open_products_and_their_groups(products):
    assert visible_keys(session("member", TEAM), products) == {"open", "team"}


def test_someone_in_another_group_sees_open_products_only(products):
    assert visible_keys(session("outsider", "some-other-group"), products) == {"open"}


def test_staff_see_every_product_including_one_hidden_from_everyone(products):
    assert visible_keys(session("curator", is_staff=True), products) == {
        "open",
        "team",
        "other",
        "nobody",
    }


def test_an_empty_access_group_hides_a_product_even_from_a_group_named_empty(products):
    Group.objects.create(name="")  # not creatable in the admin, but the database allows it
    client = session("member", TEAM, "")
    assert metadata_status(client, products["nobody"]) == 404


@pytest.mark.parametrize("near_miss", [TEAM.upper(), TEAM[:8], f" {TEAM}", f"{TEAM},{OTHER}"])
def test_group_names_must_match_exactly(products, near_miss):
    assert metadata_status(session("member", near_miss), products["team"]) == 404


def test_an_inactive_user_sees_open_products_only(products):
    client = session("member", TEAM)
    User.objects.filter(username="member").update(is_active=False)
    assert visible_keys(client, products) == {"open"}


@pytest.mark.parametrize("value", [[TEAM], [TEAM, OTHER], {"name": TEAM}, 42])
def test_an_access_group_that_is_not_a_single_string_is_refused(value):
    document = {"execution_block": "eb-list-20240101-00001", "context": {"access_group": value}}
    with pytest.raises(metadata.MetadataError, match="single string"):
        metadata.from_ingested_document(document)


def test_ingesting_a_list_valued_access_group_is_refused_and_stores_nothing(products):
    curator = session("curator", is_staff=True)
    before = DataProduct.objects.count()
    response = curator.post(
        "/ingestnewmetadata",
        {"execution_block": "eb-list-20240101-00001", "context": {"access_group": [TEAM]}},
        format="json",
    )
    assert response.status_code == 400
    assert "access_group" in response.json()["detail"]
    assert DataProduct.objects.count() == before


def test_a_hidden_product_answers_exactly_like_a_missing_one(products):
    client = APIClient()
    missing = {"uid": str(uuid.uuid4())}
    hidden = {"uid": str(products["team"].uid)}
    for path in ("/dataproductmetadata", "/download"):
        absent = client.post(path, missing, format="json")
        secret = client.post(path, hidden, format="json")
        # The body may echo the uid asked for; nothing else may differ.
        absent_body = absent.content.decode().replace(missing["uid"], "<uid>")
        secret_body = secret.content.decode().replace(hidden["uid"], "<uid>")
        assert (secret.status_code, secret_body) == (absent.status_code, absent_body), path
        assert secret.status_code == 404


def test_a_hidden_execution_block_cannot_be_downloaded(products):
    response = APIClient().post(
        "/download", {"execution_block": products["team"].execution_block}, format="json"
    )
    assert response.status_code == 404


def test_hidden_products_are_never_listed(products):
    uids = {key: str(product.uid) for key, product in products.items()}
    assert listed_uids(APIClient()) == {uids["open"]}
    assert listed_uids(session("member", TEAM)) == {uids["open"], uids["team"]}
    assert listed_uids(session("curator", is_staff=True)) == set(uids.values())


def test_dataproductsearch_shows_open_products_only_even_to_staff(products):
    response = session("curator", is_staff=True).post(
        "/dataproductsearch",
        {"start_date": "1900-01-01", "end_date": "2100-01-01"},
        format="json",
    )
    assert response.status_code == 200
    assert {row["uid"] for row in response.json()} == {str(products["open"].uid)}


def test_status_counts_only_products_open_to_everyone(products):
    # /status authenticates nobody: even a staff session sees the open count.
    for client in (APIClient(), session("curator", is_staff=True)):
        body = client.get("/status").json()
        assert body["metadata_store_status"]["number_of_dataproducts"] == 1
        assert body["pv_interface_status"]["number_of_data_products_on_pv"] == 1


def test_a_change_to_a_hidden_product_still_moves_the_status_update_time(products):
    # The dashboard reloads a signed-in member's grid when this time moves.
    before = APIClient().get("/status").json()["metadata_store_status"]
    products["team"].metadata["context"]["notes"] = "edited"
    products["team"].save()
    after = APIClient().get("/status").json()["metadata_store_status"]
    moved = dt.datetime.fromisoformat(after["last_metadata_update_time"])
    assert moved > dt.datetime.fromisoformat(before["last_metadata_update_time"])
    assert after["number_of_dataproducts"] == before["number_of_dataproducts"] == 1


def test_a_hidden_product_cannot_be_annotated_or_its_annotations_read(products):
    staff = session("curator", is_staff=True)
    uid = str(products["team"].uid)
    made = staff.post(
        "/annotation", {"data_product_uid": uid, "annotation_text": "secret"}, format="json"
    )
    assert made.status_code == 201
    outsider = session("outsider", OTHER)
    assert outsider.get(f"/annotations/{uid}").status_code == 204  # as for an unknown uid
    refused = outsider.post(
        "/annotation", {"data_product_uid": uid, "annotation_text": "x"}, format="json"
    )
    unknown = outsider.post(
        "/annotation",
        {"data_product_uid": str(uuid.uuid4()), "annotation_text": "x"},
        format="json",
    )
    assert refused.status_code == unknown.status_code == 404
    assert session("member", TEAM).get(f"/annotations/{uid}").status_code == 200


def test_the_open_compatibility_setting_opens_metadata_and_download_only(products, settings):
    settings.DPD_COMPAT_OPEN_PRODUCT_ACCESS = True
    anonymous = APIClient()
    assert visible_keys(anonymous, products) == {"open", "team", "other", "nobody"}
    download = anonymous.post("/download", {"uid": str(products["team"].uid)}, format="json")
    assert download.status_code == 200
    b"".join(download.streaming_content)
    # Lists, counts and annotations still follow the access groups.
    assert listed_uids(anonymous) == {str(products["open"].uid)}
    assert anonymous.get(f"/annotations/{products['team'].uid}").status_code == 204
