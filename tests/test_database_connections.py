"""The service's PostgreSQL connections outlive requests (CONN_MAX_AGE); one
the server has closed since the last request (a restart, a failover,
pg_terminate_backend, an idle timeout) is replaced before a request uses it,
so that request answers as usual instead of 503.

Served by gunicorn in a process of its own: Django's test client turns off
the per-request connection handling these tests are about, and the live
server closes every connection after each request."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from dpd.web_server import gunicorn_command
from tests.service_processes import Process, Service, database_url, free_port, wait_for

pytestmark = pytest.mark.skipif(not django_settings.IS_POSTGRESQL, reason="PostgreSQL sessions")

APPLICATION = "dpd-web-under-test"


@contextlib.contextmanager
def serving(url: str, tmp_path: Path) -> Iterator[Service]:
    """One gunicorn worker on the database at `url`, its sessions named APPLICATION."""
    env = {
        **os.environ,
        "DATABASE_URL": f"{url}?application_name={APPLICATION}",
        "PERSISTENT_STORAGE_PATH": str(tmp_path),
        "INDEXING_ON_STARTUP": "false",
        # Two serving threads: each keeps a session, and either may answer.
        "DPD_DOWNLOADS_PER_PROCESS": "1",
        "DPD_WEB_THREADS": "1",
    }
    port = free_port()
    process = Process("gunicorn", gunicorn_command(f"127.0.0.1:{port}", 1), env, tmp_path)
    try:
        service = Service(process, f"http://127.0.0.1:{port}")
        service.wait_ready()
        yield service
    finally:
        process.stop()


@pytest.fixture
def web(transactional_db, tmp_path):
    with serving(database_url(connection.settings_dict), tmp_path) as service:
        yield service


@pytest.fixture
def admin():
    """A session of its own, as an administrator's."""
    import psycopg

    with psycopg.connect(database_url(connection.settings_dict), autocommit=True) as session:
        yield session


def _sessions(admin) -> set[int]:
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [APPLICATION]
    ).fetchall()
    return {pid for (pid,) in rows}


def test_a_request_after_the_server_closed_the_connection_answers_as_usual(web, admin):
    assert web.post_json("/dataproductsearch", {}) == 200
    (first,) = _sessions(admin)
    admin.execute("SELECT pg_terminate_backend(%s)", [first])
    wait_for(lambda: first not in _sessions(admin), timeout=10, what="the session to end")

    assert web.post_json("/dataproductsearch", {}) == 200
    assert len(_sessions(admin) - {first}) == 1


def test_a_connection_the_server_keeps_is_reused(web, admin):
    assert web.post_json("/dataproductsearch", {}) == 200
    (first,) = _sessions(admin)
    assert web.post_json("/dataproductsearch", {}) == 200
    assert _sessions(admin) == {first}


def test_every_request_after_a_postgresql_restart_answers_as_usual(own_postgres, tmp_path):
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v0"],
        env={**os.environ, "DATABASE_URL": own_postgres.url},
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    with serving(own_postgres.url, tmp_path) as web:
        assert [web.post_json("/dataproductsearch", {}) for _ in range(6)] == [200] * 6
        own_postgres.stop()  # a fast shutdown ends every session
        own_postgres.start()

        assert [web.post_json("/dataproductsearch", {}) for _ in range(6)] == [200] * 6
