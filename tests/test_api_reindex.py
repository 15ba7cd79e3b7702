"""GET /reindexdataproducts (reference 2.2): 202 and a queued run, 409 while one is active."""

import pytest

from dpd.models import DataProduct
from indexing.tasks import run_requested_index
from tests.product_fixtures import UID

pytestmark = pytest.mark.usefixtures("upstream_volume")

ACCEPTED = "Metadata re-index request has been added to the background tasks"


def test_a_reindex_request_answers_202_with_the_reference_string_and_the_run(curator):
    response = curator.get("/reindexdataproducts")
    assert response.status_code == 202
    assert response["Content-Type"] == "application/json"
    assert response.json() == ACCEPTED
    run = curator.get(response["Location"])
    assert response["Location"].startswith("/api/v1/index-runs/")
    assert run.status_code == 200
    assert run.json()["status"] == "queued"


def test_a_second_request_while_a_run_is_queued_answers_409(curator):
    assert curator.get("/reindexdataproducts").status_code == 202
    response = curator.get("/reindexdataproducts")
    assert response.status_code == 409
    assert response.json() == {"detail": "A re-index is already in progress."}


def test_the_queued_run_indexes_the_volume_when_the_worker_carries_it_out(curator):
    response = curator.get("/reindexdataproducts")
    run_id = int(response["Location"].rstrip("/").rsplit("/", 1)[-1])
    run_requested_index(run_id)  # what the django-q2 worker calls with the queued id
    assert DataProduct.objects.count() == 15
    assert DataProduct.objects.filter(uid=UID[7]).exists()
    assert curator.get(response["Location"]).json()["status"] == "completed"
    # And the slot is free again.
    assert curator.get("/reindexdataproducts").status_code == 202


def test_the_trailing_slash_form_is_served_too(curator):
    assert curator.get("/reindexdataproducts/").status_code == 202


def test_a_product_ingested_through_the_api_is_the_same_row_after_a_reindex(curator):
    ingested = curator.post(
        "/ingestnewdataproduct", {"execution_block": "eb-test-20200325-00001"}, format="json"
    )
    before = DataProduct.objects.get(uid=ingested.json()["uid"])
    response = curator.get("/reindexdataproducts")
    run_requested_index(int(response["Location"].rstrip("/").rsplit("/", 1)[-1]))
    assert DataProduct.objects.count() == 15
    assert DataProduct.objects.get(uid=UID[15]).pk == before.pk


def test_a_head_request_starts_nothing(curator):
    from indexing.models import IndexRun

    response = curator.head("/reindexdataproducts")

    assert response.status_code == 405
    assert not IndexRun.objects.exists()
