"""Request bodies as they arrive over a real socket, through gunicorn (the
production server), where Django's test client cannot go: chunked bodies,
oversized ones, whose 413 the client must be able to read, and requests
gunicorn refuses before Django sees them."""

from __future__ import annotations

import http.client
import json
import os
import socket

import pytest
from django.db import connection

from dpd.web_server import gunicorn_command
from tests.service_processes import Process, database_url, free_port, read_answer, wait_for

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
    process = Process("gunicorn", gunicorn_command(f"127.0.0.1:{port}", 1), env, tmp_path)

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


# --- Requests gunicorn refuses before Django sees them ------------------------------


def raw_exchange(port: int, sent: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; the answer's status, headers and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(sent)
        return read_answer(sock)


@pytest.mark.parametrize(
    ("sent", "status", "says"),
    [
        (b"GET /status?q=" + b"x" * 5000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 400, "too large"),
        (b"GET /status HTTP/1.1\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n", 431, "fields size"),
        (b"GET /status HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 120 + b"\r\n", 431, "headers fields"),
        (b"HELLO\r\n\r\n", 400, "HELLO"),
        (b"GET /status HTTP/1.1\r\nHost: a\r\nBad Header: 1\r\n\r\n", 400, "Bad Header"),
        (
            b"POST /dataproductsearch HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo\r\n\r\n",
            501,
            "transfer coding",
        ),
    ],
    ids=["long-request-line", "huge-header", "many-headers", "garbage", "bad-name", "coding"],
)
def test_requests_the_server_refuses_are_answered_in_json(server, sent, status, says):
    """The API's errors are JSON, also the ones gunicorn answers itself."""
    answered, headers, body = raw_exchange(server, sent)

    assert answered == status, body
    assert headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(body)
    assert says.lower() in json.loads(body)["detail"].lower()


@pytest.mark.parametrize(
    "chunks",
    [b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n"],
    ids=["bad-chunk-size", "missing-terminator"],
)
def test_a_malformed_chunked_body_is_a_json_400(server, chunks):
    """gunicorn finds the fault while the body is read, inside the
    application; without an answer from it the client saw the connection
    close with nothing."""
    head = b"POST /dataproductsearch HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
    sent = head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks

    answered, headers, body = raw_exchange(server, sent)

    assert answered == 400, body
    assert headers["Content-Type"] == "application/json"
    assert "chunked" in json.loads(body)["detail"]
