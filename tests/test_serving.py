"""Serving as users meet it, through the production server (gunicorn with the
project's worker and configuration): downloads that last as long as their
client needs, many at once beside the API, clients that hold a connection
without using it, the download limits, and stopping with downloads in flight."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import socket
import tarfile
import threading
import time
from pathlib import Path

import pytest
from django.db import connection

from dpd.download import plan_download
from dpd.models import DataProduct
from dpd.services import product_ingest_folder
from dpd.tar_layout import archive_layout
from dpd.tar_stream import stream_archive
from dpd.web_server import gunicorn_command
from tests.service_processes import Process, database_url, free_port, running_services, wait_for

pytestmark = pytest.mark.slow

EB = "eb-serving-20240101-00001"
MIB = 1024 * 1024
# gunicorn's worker timeout in these tests: a download must outlive it many times over.
WORKER_TIMEOUT = 2


@pytest.fixture
def product(tmp_path, transactional_db, settings) -> Path:
    """One product of ~10 MiB: more than the kernel buffers between a server
    and a client that stops reading, so such a client really stalls the stream."""
    if connection.vendor != "postgresql":
        pytest.fail("the serving tests share the test database with a server: PostgreSQL only")
    volume = tmp_path / "volume"
    folder = volume / EB
    (folder / "data").mkdir(parents=True)
    (folder / "ska-data-product.yaml").write_text(
        f"execution_block: {EB}\ncontext: {{}}\nconfig: {{}}\nfiles: []\n"
    )
    (folder / "data" / "a.bin").write_bytes(os.urandom(8 * MIB))
    (folder / "data" / "b.bin").write_bytes(os.urandom(2 * MIB + 123))
    (folder / "data" / "empty").write_bytes(b"")
    settings.PERSISTENT_STORAGE_PATH = str(volume)
    product_ingest_folder(EB)
    return volume


def expected_archive() -> bytes:
    plan = plan_download(DataProduct.objects.filter(execution_block=EB), filename="x", asked="x")
    return b"".join(stream_archive(archive_layout(plan)))


@contextlib.contextmanager
def server(volume: Path, log_dir: Path, *, workers: int = 2, **env: str):
    """gunicorn as runservice starts it, with a short worker timeout."""
    port = free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "PERSISTENT_STORAGE_PATH": str(volume),
        "DPD_THROTTLE_ANON_RATE": "",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    argv = gunicorn_command(f"127.0.0.1:{port}", workers, "--timeout", str(WORKER_TIMEOUT))
    process = Process("gunicorn", argv, environment, log_dir)
    try:
        wait_for(lambda: answers(process, port), timeout=60, what="gunicorn to serve /status")
        yield process, port
    finally:
        process.stop()


def answers(process: Process, port: int) -> bool:
    assert process.alive(), process.output()
    with contextlib.suppress(OSError):
        return timed_request(port, "GET", "/status")[0] == 200
    return False


def timed_request(port: int, method: str, path: str, body: dict | None = None):
    """(status, seconds) of one request on a new connection."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        payload = json.dumps(body).encode() if body is not None else b""
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        status, _, _ = read_head(sock)
    return status, time.monotonic() - started


def read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, the body bytes that came with the head)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before the end of the head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}
    return int(status_line.split()[1]), headers, rest


class Download:
    """One POST /download on a raw socket with a small receive buffer, so the
    client, not the kernel, decides how fast the bytes move."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", port))
        body = json.dumps({"execution_block": EB}).encode()
        self.sock.sendall(
            b"POST /download HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        self.status, self.headers, self.body = read_head(self.sock)

    def read(self, *, rate: float | None = None, stop_after: float | None = None) -> bytes:
        """The rest of the body, at about `rate` bytes/s; or what came until
        the server closed the connection, or until `stop_after` seconds."""
        started = time.monotonic()
        received = bytearray(self.body)
        while True:
            if stop_after is not None and time.monotonic() - started > stop_after:
                break
            try:
                chunk = self.sock.recv(64 * 1024)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
            if rate:
                time.sleep(max(0.0, started + len(received) / rate - time.monotonic()))
        return bytes(received)

    def close(self) -> None:
        self.sock.close()


def _download_when_free(port: int, seconds: float = 10) -> Download:
    """A download started as soon as the server answers 200, or the last 503."""
    deadline = time.monotonic() + seconds
    while True:
        download = Download(port)
        if download.status == 200 or time.monotonic() > deadline:
            return download
        download.close()
        time.sleep(0.05)


def assert_whole_archive(download: Download, data: bytes, expected: bytes) -> None:
    assert download.status == 200
    assert int(download.headers["content-length"]) == len(expected)
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(expected).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        assert sorted(archive.getnames()) == sorted(
            [EB, f"{EB}/data", f"{EB}/ska-data-product.yaml"]
            + [f"{EB}/data/{name}" for name in ("a.bin", "b.bin", "empty")]
            + [f"{EB}/MANIFEST.sha256"]
        )


def test_a_download_lasting_three_worker_timeouts_arrives_byte_identical(product, tmp_path):
    expected = expected_archive()
    with server(product, tmp_path) as (process, port):
        download = Download(port)
        started = time.monotonic()
        data = download.read(rate=len(expected) / (3.5 * WORKER_TIMEOUT))
        took = time.monotonic() - started
        download.close()
        log = process.output()

    assert took > 3 * WORKER_TIMEOUT
    assert_whole_archive(download, data, expected)
    assert "WORKER TIMEOUT" not in log


def test_twenty_slow_downloads_leave_status_and_search_answering(product, tmp_path):
    with server(product, tmp_path) as (_, port):
        downloads = [Download(port) for _ in range(20)]
        try:
            assert [d.status for d in downloads] == [200] * 20
            status_answer = timed_request(port, "GET", "/status")
            search_answer = timed_request(
                port, "POST", "/dataproductsearch", {"start_date": "", "end_date": ""}
            )
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                server_connections = cursor.fetchone()[0]
        finally:
            for download in downloads:
                download.close()

    assert status_answer[0] == 200 and status_answer[1] < 1.0, status_answer
    assert search_answer[0] == 200 and search_answer[1] < 1.0, search_answer
    # A download in flight holds no database connection: only the threads
    # that answered /status and the search keep theirs.
    assert server_connections <= 4, server_connections


def trickle(sock: socket.socket, data: bytes, stop: threading.Event) -> None:
    """Send `data` a byte at a time, one every 0.2 s, until stopped or refused."""
    for byte in data:
        if stop.wait(0.2):
            return
        try:
            sock.send(bytes([byte]))
        except OSError:
            return


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(1024) == b""
    except (TimeoutError, BlockingIOError):
        return False
    except OSError:  # reset
        return True


def test_clients_that_trickle_their_headers_are_closed_and_block_nothing(product, tmp_path):
    request = b"POST /dataproductsearch HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: y\r\n" * 50
    stop = threading.Event()
    with server(product, tmp_path, DPD_REQUEST_HEADER_TIMEOUT="2") as (process, port):
        trickled = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        silent = socket.create_connection(("127.0.0.1", port))
        senders = [
            threading.Thread(target=trickle, args=(sock, request, stop)) for sock in trickled
        ]
        for sender in senders:
            sender.start()
        try:
            time.sleep(0.5)
            status_answer = timed_request(port, "GET", "/status")
            wait_for(
                lambda: all(closed_by_server(sock) for sock in [*trickled, silent]),
                timeout=10,
                what="the server to close the connections that never sent a request",
            )
            log = process.output()
        finally:
            stop.set()
            for sender in senders:
                sender.join()
            for sock in [*trickled, silent]:
                sock.close()

    assert status_answer[0] == 200 and status_answer[1] < 1.0, status_answer
    assert log.count("no complete request within 2.0 s") == 21


def test_a_client_that_stops_reading_is_disconnected_and_frees_its_slot(product, tmp_path):
    with server(
        product,
        tmp_path,
        workers=1,
        DPD_CLIENT_IDLE_TIMEOUT="1",
        DPD_DOWNLOADS_PER_PROCESS="1",
    ) as (process, port):
        stalled = Download(port)
        refused = Download(port)
        refused.close()
        # The kernel's buffers fill, then nothing moves for the idle limit.
        wait_for(
            lambda: "cut after" in process.output(),
            timeout=30,
            what="the server to cut a download whose client stopped reading",
        )
        buffered = stalled.read()  # what the kernels held, then the end
        stalled.close()
        after = Download(port)
        data = after.read()
        after.close()
        log = process.output()

    assert stalled.status == 200
    assert len(buffered) < int(stalled.headers["content-length"])
    assert refused.status == 503
    assert_whole_archive(after, data, expected_archive())
    assert "sent or read nothing for 1.0 s" in log
    assert f"download of {EB}.tar cut after" in log


@pytest.mark.parametrize(
    "workers, limits",
    [
        (1, {"DPD_DOWNLOADS_PER_PROCESS": "2", "DPD_DOWNLOADS_TOTAL": "10"}),
        (2, {"DPD_DOWNLOADS_PER_PROCESS": "5", "DPD_DOWNLOADS_TOTAL": "2"}),
    ],
    ids=["per-process", "total"],
)
def test_downloads_beyond_the_limit_get_503_with_retry_after(product, tmp_path, workers, limits):
    env = {**limits, "DPD_DOWNLOADS_RETRY_AFTER_SECONDS": "7"}
    with server(product, tmp_path, workers=workers, **env) as (_, port):
        running = [Download(port) for _ in range(2)]
        refused = Download(port)
        body = refused.read()
        for download in [*running, refused]:
            download.close()
        # The slots are free once the server sees those downloads end (at
        # its next write to a closed connection): soon, not at once.
        again = _download_when_free(port)
        again.close()

    assert [d.status for d in running] == [200, 200]
    assert refused.status == 503
    assert refused.headers["retry-after"] == "7"
    assert refused.headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "detail": "Too many downloads in progress (2 at once); try again in 7 seconds."
    }
    assert again.status == 200


def test_sigterm_lets_a_download_in_flight_finish_within_the_grace_period(product, tmp_path):
    expected = expected_archive()
    with server(product, tmp_path, DPD_SHUTDOWN_GRACE_SECONDS="5") as (process, port):
        download = Download(port)
        process.popen.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(OSError):  # no longer accepting
            timed_request(port, "GET", "/status")
        data = download.read(rate=len(expected) / 2.0)
        download.close()
        code = process.popen.wait(timeout=15)

    assert_whole_archive(download, data, expected)
    assert code == 0


def test_sigterm_cuts_what_outlasts_the_grace_period_and_logs_it(product, tmp_path):
    """Through runservice: the supervisor waits for gunicorn's own grace."""
    with running_services(product, tmp_path, DPD_SHUTDOWN_GRACE_SECONDS="2") as services:
        service = services.runservice("web")
        service.wait_ready()
        port = int(service.base_url.rsplit(":", 1)[1])
        download = Download(port)
        service.process.popen.send_signal(signal.SIGTERM)
        time.sleep(4)  # reads nothing through the grace period
        data = download.read()  # what the kernel buffered, then the end
        download.close()
        code = service.process.popen.wait(timeout=20)
        log = service.process.output()

    assert download.status == 200
    assert len(data) < int(download.headers["content-length"])
    assert "cutting 1 request(s) still in flight" in log
    assert f"download of {EB}.tar cut after" in log
    assert code == 0


@pytest.mark.parametrize("path", ["/dataproductsearch", "/filterdataproducts"])
def test_a_body_that_stops_arriving_gets_408_and_frees_the_worker(product, tmp_path, path):
    """Headers complete, then part of the promised body, then nothing: the
    client is told it was too slow (it may retry), not that the server failed."""
    with server(product, tmp_path, workers=1, DPD_CLIENT_IDLE_TIMEOUT="1") as (process, port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n".encode()
                + b'{"start_'
            )
            started = time.monotonic()
            status, headers, body = read_head(sock)
            waited = time.monotonic() - started
            while len(body) < int(headers.get("content-length", "0")):
                body += sock.recv(4096)
            closed = wait_for(lambda: closed_by_server(sock), timeout=5, what="the close")
        after = timed_request(port, "GET", "/status")
        log = process.output()

    assert status == 408, (status, body, log[-2000:])
    assert "sent or read nothing for 1.0 s" in json.loads(body)["detail"]
    assert closed  # the rest of the body is never read as a next request
    assert waited < 8
    assert after[0] == 200
    assert "Traceback" not in log
