"""The DLM sync as a deployment runs it: `manage.py runworker` (a real
django-q2 cluster) mirrors the DLM's items into the catalogue with no other
command, and `manage.py runweb` lists them."""

from __future__ import annotations

import json
import urllib.request

import pytest
from django.db import connections

from dpd.models import DataProduct
from tests import dlm_support as dlm
from tests.dlm_support import EXPIRED, LISTED, NO_STORAGE
from tests.service_processes import postgres_services, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def services(transactional_db, volume, tmp_path):
    with postgres_services(
        volume,
        tmp_path,
        SKA_DATAPRODUCT_DLM_INTERFACE_ENABLED="true",
        INDEXING_ON_STARTUP="false",
        SDP_ETCD_HOST="",
    ) as started:
        dlm.load_schema(connections["default"].settings_dict)  # committed: psql
        yield started


def _mirrored() -> dict[str, str]:
    rows = DataProduct.objects.filter(source__startswith="dlm").values_list("uid", "source")
    return {str(uid): source for uid, source in rows}


def test_a_worker_started_alone_mirrors_the_dlm_and_the_web_side_lists_it(services):
    worker = services.runworker("worker")
    mirrored = wait_for(
        lambda: _mirrored() if len(_mirrored()) == len(LISTED) + 2 else None,
        timeout=90,
        what=f"the worker's first DLM sync:\n{services.logs()}",
    )
    web = services.runweb("web")
    wait_for(lambda: web.get("/healthz")[0] == 200, timeout=60, what="the web side")
    json_body = {"Content-Type": "application/json"}
    request = urllib.request.Request(web.base_url + "/dataproductsearch", b"{}", json_body)
    with urllib.request.urlopen(request, timeout=10) as response:
        status, rows = response.status, json.loads(response.read())

    assert worker.alive(), services.logs()
    assert mirrored == {
        **{uid: "dlm" for uid in LISTED},
        NO_STORAGE: "dlm",  # an access group's: mirrored, shown to its members only
        EXPIRED: "dlm_retired",
    }
    assert status == 200
    assert {row["uid"] for row in rows} == LISTED
    assert {row["metadata_store_name"] for row in rows} == {"DLM"}
