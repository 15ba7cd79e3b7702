"""Shared fixtures. PostgreSQL is the test database (DATABASE_URL, set by
`make test`); with CI=true anything else stops the run instead of skipping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings

from dpd.sample_volume import build_sample_volume
from tests.service_processes import ThrowawayPostgres, unavailable

pytest_plugins = ["tests.product_fixtures", "tests.etcd_fixtures", "tests.database_peer"]

FIXTURES = settings.BASE_DIR / "sample_data" / "ska-examples"
# The upstream tests' configured root: section 7's uids are computed with it.
UPSTREAM_ROOT = "tests/test_files/product"


def pytest_configure(config):
    if os.environ.get("CI", "").lower() == "true" and not settings.IS_POSTGRESQL:
        raise pytest.UsageError(
            "CI=true but DATABASE_URL is not PostgreSQL; run the suite with `make test`"
        )


@pytest.fixture
def own_postgres():
    """A PostgreSQL cluster made for the test and removed afterwards, so it
    can be stopped and started without touching any other test's server."""
    try:
        server = ThrowawayPostgres()
    except (RuntimeError, OSError, KeyError) as exc:
        unavailable(f"cannot start a throwaway PostgreSQL: {exc}")
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def sample_volume(tmp_path: Path, settings) -> Path:
    """The fixture volume (18 metadata files and their payloads) as the
    configured PERSISTENT_STORAGE_PATH."""
    root = tmp_path / "volume"
    build_sample_volume(root)
    settings.PERSISTENT_STORAGE_PATH = str(root)
    return root


@pytest.fixture
def volume(tmp_path: Path, settings) -> Path:
    """An empty folder as the configured PERSISTENT_STORAGE_PATH (the
    process-level tests write their products into it)."""
    root = tmp_path / "volume"
    root.mkdir()
    settings.PERSISTENT_STORAGE_PATH = str(root)
    return root


@pytest.fixture(autouse=True)
def _fresh_cache_and_no_anonymous_throttle(settings):
    """Every test starts with empty caches (bearer lookups, login failures,
    throttle history, remembered counts), and with the anonymous-client
    throttle off: the whole suite talks from 127.0.0.1.
    tests/test_hardening.py turns it back on."""
    from django.core.cache import caches

    for cache in caches.all(initialized_only=False):
        cache.clear()
    settings.DPD_THROTTLE_ANON_RATE = ""
    yield
    for cache in caches.all(initialized_only=True):
        cache.clear()


@pytest.fixture(autouse=True)
def _no_search_sample_behind_the_tests_back(settings):
    """No thread reads a sample of the search texts (dpd.search_pieces) on a
    connection of its own, which would not see a test's uncommitted rows;
    tests/test_search_pieces.py gives or reads one itself."""
    from dpd import search_pieces

    settings.SEARCH_SAMPLE_ROWS = 0
    search_pieces.forget_sample()
    yield
    search_pieces.forget_sample()


@pytest.fixture(autouse=True)
def _indexing_tasks_keep_the_test_process_priority(settings):
    """Tasks called in-process would lower pytest's own CPU priority for the
    rest of the run (INDEXING_NICENESS); real workers in subprocesses still do."""
    settings.INDEXING_NICENESS = 0


@pytest.fixture
def indexed_sample(tmp_path: Path, settings, db) -> Path:
    """The fixture volume's 15 valid products in the catalogue, with the uids of
    reference section 7 (the volume is built under the upstream tests' root)."""
    settings.BASE_DIR = tmp_path
    settings.PERSISTENT_STORAGE_PATH = UPSTREAM_ROOT
    return catalogue_sample(tmp_path)


def catalogue_sample(base_dir: Path) -> Path:
    """indexed_sample's rows, in whichever database the process uses
    (tests/database_peer.py catalogues them in SQLite the same way); the
    settings point at base_dir / UPSTREAM_ROOT."""
    from dpd.metadata import MetadataError, from_volume_file
    from dpd.models import DataProduct

    root = base_dir / UPSTREAM_ROOT
    build_sample_volume(root)
    rows = []
    for path in sorted(root.rglob(settings.METADATA_FILE_NAME)):
        try:
            product = from_volume_file(
                path.read_bytes(),
                configured_root=UPSTREAM_ROOT,
                relative_metadata_file=str(path.relative_to(root)),
            )
        except MetadataError:  # the three invalid fixtures
            continue
        rows.append(DataProduct(**DataProduct.fields_from(product)))
    DataProduct.objects.bulk_create(rows)
    return root
