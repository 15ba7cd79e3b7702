"""Request bodies as they arrive over a real socket, through gunicorn (the
production server), where Django's test client cannot go: chunked bodies,
and oversized ones, whose 413 the client must be able to read."""

from __future__ import annotations

import http.client
import json
import os
import sys

import pytest
from django.db import connection

from tests.service_processes import Process, database_url, free_port, wait_for

WIDE = {"start_date": "2001-12-12", "end_date": "2032-12-12"}


@pytest.fixture
def server(transactional_db, upstream_catalogue, tmp_path, settings):
    if connection.vendor != "postgresql":
        pytest.fail("the wire tests share the test database with a server: PostgreSQL only")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "PERSISTENT_STORAGE_PATH": str(upstream_catalogue),
        "DPD_THROTTLE_ANON_RATE": "",
        "DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE": str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE),
    }
    argv = [sys.executable, "-m", "gunicorn", "dpd.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1"]
    process = Process("gunicorn", argv, env, tmp_path)

    def answers() -> bool:
        assert process.alive(), process.output()
        try:
            return request(port, "GET", "/status")[0] == 200
        except OSError:
            return False

    try:
        wait_for(answers, timeout=60, what="gunicorn to serve /status")
        yield port
    finally:
        process.stop()


def request(port: int, method: str, path: str, body=None, headers=None, **options):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {}, **options)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        conn.close()


def post_search(port: int, body, **options):
    """POST a JSON body to /dataproductsearch; an iterator body with
    encode_chunked=True goes out chunked, without Content-Length."""
    return request(
        port, "POST", "/dataproductsearch", body, {"Content-Type": "application/json"}, **options
    )


def test_a_chunked_json_body_is_read_like_any_other(server):
    text = json.dumps(WIDE).encode()
    pieces = iter([text[:10], text[10:]])  # a generator body: sent chunked

    status, _, body = post_search(server, pieces, encode_chunked=True)

    assert status == 200, body
    assert len(json.loads(body)) == 12


def test_an_oversized_chunked_body_is_a_413(server, settings):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    pieces = iter([b'{"padding": "', b"x" * (limit + 10), b'"}'])

    status, _, body = post_search(server, pieces, encode_chunked=True)

    assert status == 413
    assert str(limit) in json.loads(body)["detail"]


def test_a_20_mb_body_gets_a_413_the_client_can_read(server):
    body = b'{"padding": "' + b"x" * (20 * 1024 * 1024) + b'"}'

    status, content_type, answer = post_search(server, body)

    assert status == 413
    assert content_type == "application/json"
    assert "limit" in json.loads(answer)["detail"]
