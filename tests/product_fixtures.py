"""Fixtures of the product endpoints' tests (registered in conftest.py).

The catalogue is built at the upstream tests' configured root
(`tests/test_files/product`, relative to the project directory), so every uid
comes out exactly as in reference section 7; it is filled through
`product_ingest_folder`, which hashes exactly what the indexer hashes.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from dpd.sample_volume import build_sample_volume
from dpd.services import InvalidMetadataFile, product_ingest_folder

UPSTREAM_ROOT = "tests/test_files/product"
GROUP = "ac9d0e43-931d-455d-b916-7e508db78a8e"
# Reference section 7 uids (configured root tests/test_files/product).
UID = {
    2: "c05bce72-4a6e-234f-06e7-02dc92aba3f4",
    3: "e3a44bb6-bb9f-f1a5-69bc-9b3ec8622a53",
    7: "6a11ddaa-6b45-6759-47e7-a5abd5105b0e",
    11: "f88fb55f-2b16-3a68-e8ba-da24ae5a2255",
    12: "7cfae145-92be-9c4d-5f4b-d1fdc6ebb89a",
    13: "a0a2a10f-e382-31ba-0949-9a79204dfcad",
    15: "e38eb2bb-684f-de46-63ec-bd64deff6ff0",
    18: "81bc8c1b-2a27-b24d-3941-f95885c103fb",
}


@pytest.fixture
def upstream_volume(tmp_path: Path, settings) -> Path:
    """The fixture volume at the upstream tests' configured root."""
    settings.BASE_DIR = tmp_path
    settings.PERSISTENT_STORAGE_PATH = UPSTREAM_ROOT
    root = tmp_path / UPSTREAM_ROOT
    build_sample_volume(root)
    return root


@pytest.fixture
def upstream_catalogue(upstream_volume: Path, db) -> Path:
    """The 15 valid fixture products catalogued (the 3 invalid files refused)."""
    for metadata_file in sorted(upstream_volume.rglob("ska-data-product.yaml")):
        with contextlib.suppress(InvalidMetadataFile):  # the three invalid fixtures
            product_ingest_folder(str(metadata_file.parent.relative_to(upstream_volume)))
    return upstream_volume


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


@pytest.fixture
def curator(db) -> APIClient:
    """A staff user: may ingest and re-index whatever the access settings say."""
    client = APIClient()
    client.force_login(User.objects.create_user("curator", is_staff=True))
    return client


@pytest.fixture
def member(db) -> APIClient:
    """A user in the access group of fixtures #13 and #14."""
    user = User.objects.create_user("member")
    user.groups.add(Group.objects.create(name=GROUP))
    client = APIClient()
    client.force_login(user)
    return client
