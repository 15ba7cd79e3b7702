"""/status reads everything in one statement (dpd.status_rows): its blocks
must be exactly what the reads one by one give, on PostgreSQL and on the
embedded SQLite alike, in every state the tables can be in."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import time_machine
from django.conf import settings

from dpd.status import api_status
from tests import status_scenarios

pytestmark = pytest.mark.django_db


def test_each_block_is_what_the_reads_one_by_one_give():
    assert status_scenarios.differences() == {}


def test_the_blocks_show_a_run_in_progress_and_the_last_finished_run(settings):
    settings.SDP_ETCD_HOST = "etcd.example.org"  # watched
    status_scenarios.SCENARIOS["running, a queued run, a product"]()
    with time_machine.travel(status_scenarios.NOW, tick=False):
        body = api_status()
    assert body["indexing"]["in_progress"] is True
    assert body["indexing"]["progress"]["indexing_step"] == "parsing"
    started = body["indexing"]["coordination_state"]["started_at"]
    assert started == "2026-03-04T05:03:07.890123+00:00"
    assert body["pv_interface_status"]["last_index_duration"] == "1 day, 2:00:03.450000"
    assert body["pv_interface_status"]["last_index_run"]["files_ingested"] == 42
    assert body["sdp_config_db"]["number_of_flows"] == 17
    assert body["sdp_config_db"]["connected"] is True
    assert body["metadata_store_status"]["number_of_dataproducts"] == 1


def test_on_sqlite_too(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'status.sqlite3'}",
        "PERSISTENT_STORAGE_PATH": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "dpd.settings",
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.status_scenarios"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {}
