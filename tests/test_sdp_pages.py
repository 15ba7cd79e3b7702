"""The product page's "SDP flows" table and the admin's read-only Flow list,
with flows written by the watcher from a real etcd (the SDP sample)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from dpd.models import DataProduct, Flow
from tests.sdp_support import EB1, EB3, ingest, watch_once

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
]

CHANGELIST = "admin:dpd_flow_changelist"


@pytest.fixture
def flows(sdp_etcd):
    product = ingest(EB1)
    sdp_etcd.load()
    watch_once()
    return product


@pytest.fixture
def signed_in(db) -> Client:
    client = Client()
    client.force_login(User.objects.create_user("reader"))
    return client


def test_the_product_page_lists_the_flows_of_its_execution_block(signed_in, flows):
    page = signed_in.get(flows.get_absolute_url()).content.decode()
    table = page[page.index('id="flows"') :]
    for header in ("Processing block", "Flow", "Kind", "Status", "Last update"):
        assert f"<th>{header}</th>" in table
    assert "pointing-offsets" in table and "COMPLETED" in table
    assert "dlm-persist" in table and "unknown" in table  # a flow with no state yet
    assert "2026-01-15 11:02:13" in table  # its state's last_updated (UTC)


def test_a_placeholder_page_says_what_it_is(signed_in, flows):
    placeholder = DataProduct.objects.get(source="sdp", execution_block=EB3)
    page = signed_in.get(placeholder.get_absolute_url()).content.decode()
    assert "placeholder for SDP work in progress" in page
    assert "INITIALISED" in page[page.index('id="flows"') :]


def test_a_product_without_flows_has_no_flows_table(signed_in, db, sdp_etcd):
    product = ingest("eb-lonely-20260101-00001")
    watch_once()
    assert 'id="flows"' not in signed_in.get(product.get_absolute_url()).content.decode()


def test_the_admin_lists_flows_filtered_by_status_and_kind(admin_client, flows):
    page = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert "6 SDP flows" in page
    failed = admin_client.get(reverse(CHANGELIST), {"status": "FAILED"}).content.decode()
    assert "1 SDP flow" in failed and "eb-m002-20260116-00001" in failed
    queues = admin_client.get(reverse(CHANGELIST), {"kind": "data-queue"}).content.decode()
    assert "receive-metrics" in queues and "pointing-offsets" not in queues


def test_the_admin_finds_flows_by_execution_block(admin_client, flows):
    page = admin_client.get(reverse(CHANGELIST), {"q": EB3}).content.decode()
    assert "1 SDP flow" in page and "pb-m003-20260117-00001" in page


def test_the_admin_cannot_change_or_delete_a_flow(admin_client, flows):
    flow = Flow.objects.get(kind="data-queue")
    change = reverse("admin:dpd_flow_change", args=[flow.pk])
    page = admin_client.get(change).content.decode()
    assert 'name="status"' not in page  # read-only: no form fields
    response = admin_client.post(change, {"status": "COMPLETED"})
    assert response.status_code == 403
    assert admin_client.get(reverse("admin:dpd_flow_delete", args=[flow.pk])).status_code == 403
    assert Flow.objects.get(pk=flow.pk).status == "FLOWING"
