"""Annotations outlive the catalogue rows they describe: a full re-index, and
a product that leaves the volume and comes back, keep every note and its
history (annotations point at the product's stable uid, not at a row)."""

from __future__ import annotations

import os
import shutil

import pytest
from django.test import Client
from rest_framework.test import APIClient

from annotations.models import Annotation
from dpd.models import DataProduct
from indexing.indexer import index_volume
from tests.annotation_helpers import make_user

EB = "eb-m001-20230921-245"


def reindex(root):
    """A complete run; the sample volume's three invalid files are its only errors."""
    result = index_volume(str(root), workers=1)
    assert result.walk_complete and not result.timed_out
    assert len(result.errors) == 3
    return result


def touch_every_metadata_file(root) -> None:
    """Make every file look changed, so the next run re-reads and rewrites all rows."""
    for path in root.rglob("ska-data-product.yaml"):
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


@pytest.fixture
def scientist(db) -> APIClient:
    client = APIClient()
    client.force_login(make_user("scientist"))
    return client


@pytest.fixture
def annotated(sample_volume, scientist):
    """The indexed sample volume with one annotation, edited once, on EB's product."""
    reindex(sample_volume)
    product = DataProduct.objects.get(execution_block=EB)
    created = scientist.post(
        "/annotation",
        {"data_product_uid": str(product.uid), "annotation_text": "RFI in scan 3."},
        format="json",
    )
    scientist.post(
        "/annotation",
        {"annotation_id": created.json()["annotation_id"], "annotation_text": "RFI in 3 and 4."},
        format="json",
    )
    return product


def listed(client: APIClient, uid) -> list[str]:
    response = client.get(f"/annotations/{uid}")
    return [] if response.status_code == 204 else [r["annotation_text"] for r in response.json()]


def test_a_full_reindex_keeps_annotations_and_their_history(sample_volume, scientist, annotated):
    touch_every_metadata_file(sample_volume)

    result = reindex(sample_volume)

    assert result.files_skipped == 0  # every row re-read and rewritten
    product = DataProduct.objects.get(execution_block=EB)
    assert product.uid == annotated.uid
    assert listed(scientist, product.uid) == ["RFI in 3 and 4."]
    (revision,) = Annotation.objects.get().revisions.all()
    assert revision.annotation_text == "RFI in scan 3."


def test_a_product_removed_and_re_added_finds_its_annotations_again(
    sample_volume, tmp_path, scientist, annotated
):
    folder = sample_volume / annotated.dataproduct_file
    parked = tmp_path / "parked"
    shutil.move(folder, parked)

    reindex(sample_volume)

    assert not DataProduct.objects.filter(uid=annotated.uid).exists()
    assert listed(scientist, annotated.uid) == []  # no visible product: 204
    assert Annotation.objects.filter(data_product_uid=annotated.uid).count() == 1

    shutil.move(parked, folder)
    reindex(sample_volume)

    assert DataProduct.objects.get(execution_block=EB).uid == annotated.uid
    assert listed(scientist, annotated.uid) == ["RFI in 3 and 4."]
    page = Client()
    page.force_login(make_user("curator", staff=True))
    html = page.get(f"/products/{annotated.uid}/").content.decode()
    assert "RFI in 3 and 4." in html
    assert "RFI in scan 3." in html
