"""The DataProduct admin: what a curator scans, filters, searches and reads."""

from __future__ import annotations

import html

import pytest
from django.urls import reverse

from dpd.models import DataProduct
from indexing.indexer import index_volume

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:dpd_dataproduct_changelist"


@pytest.fixture
def catalogue(sample_volume):
    index_volume()
    return sample_volume


def test_the_changelist_shows_every_product_with_type_and_instrument(admin_client, catalogue):
    response = admin_client.get(reverse(CHANGELIST))

    assert response.status_code == 200
    page = response.content.decode()
    assert "15 data products" in page
    assert "eb-orcatest-20240814-94773" in page
    assert "ac9d0e43-931d-455d-b916-7e508db78a8e" in page  # an access group column value
    m004 = DataProduct.objects.get(execution_block="eb-m004-20191031-12345")
    assert m004.metadata["obscore"]["dataproduct_type"] in page


def test_a_search_by_execution_block_finds_only_that_block(admin_client, catalogue):
    response = admin_client.get(reverse(CHANGELIST), {"q": "eb-notebook-20240201-54576"})

    assert response.status_code == 200
    page = response.content.decode()
    assert "2 data products" in page or "2 results" in page
    assert "pb-notebookvr-20240201-54576" in page
    assert "eb-m001-20221212-12345" not in page


def test_a_search_by_uid_finds_the_product(admin_client, catalogue):
    product = DataProduct.objects.get(execution_block="eb-m005-20231031-12345")

    response = admin_client.get(reverse(CHANGELIST), {"q": str(product.uid)})

    assert "1 result" in response.content.decode()


def test_filters_by_access_group_and_date_narrow_the_list(admin_client, catalogue):
    group = "ac9d0e43-931d-455d-b916-7e508db78a8e"

    by_group = admin_client.get(reverse(CHANGELIST), {"access_group": group})
    by_year = admin_client.get(reverse(CHANGELIST), {"date_created__year": "2019"})

    assert "2 results" in by_group.content.decode()
    assert "2 results" in by_year.content.decode()


def test_the_change_page_shows_the_metadata_pretty_printed_and_read_only(admin_client, catalogue):
    product = DataProduct.objects.get(execution_block="eb-m005-20231031-12345")

    response = admin_client.get(reverse("admin:dpd_dataproduct_change", args=[product.pk]))

    assert response.status_code == 200
    page = html.unescape(response.content.decode())
    assert "<pre" in page and '"execution_block": "eb-m005-20231031-12345"' in page
    assert str(product.uid) in page
    # Identifiers and metadata are shown, never offered as inputs.
    for name in ("uid", "metadata_file", "metadata", "execution_block"):
        assert f'name="{name}"' not in page


def test_products_cannot_be_added_by_hand(admin_client, catalogue):
    response = admin_client.get(reverse("admin:dpd_dataproduct_add"))

    assert response.status_code == 403
