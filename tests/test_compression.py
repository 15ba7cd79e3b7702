"""gzip for clients that accept it, as browsers and `requests` do: the same
answers in fewer bytes, and downloads untouched (reference 2.9)."""

from __future__ import annotations

import gzip
import json
import subprocess

import pytest
import requests
from django.db import connection
from django.test import RequestFactory
from rest_framework.test import APIClient

from dpd import compression
from dpd.sample_volume import build_sample_volume
from indexing.models import IndexRun
from indexing.services import index_run
from tests.test_serving import server

WIDE = {"start_date": "2001-12-12", "end_date": "2032-12-12"}
FIRST_LOAD = {"filterModel": {}, "searchPanelOptions": {"items": []}, "sortModel": []}
BROWSER = "gzip, deflate, br, zstd"  # what Chromium sends
EB15 = "eb-test-20200325-00001"


def post(path: str, body: dict, **headers):
    response = APIClient().post(path, body, format="json", **headers)
    assert response.status_code == 200, response.content
    return response


def unpacked(response) -> bytes:
    assert response["Content-Encoding"] == "gzip"
    assert int(response["Content-Length"]) == len(response.content)
    return gzip.decompress(response.content)


@pytest.mark.usefixtures("indexed_sample")
@pytest.mark.parametrize(
    ("path", "body", "accept"),
    [
        ("/dataproductsearch", WIDE, "application/json"),
        ("/filterdataproducts", FIRST_LOAD, "application/json"),
        ("/dataproductsearch", WIDE, "text/csv"),
        ("/filterdataproducts", {**FIRST_LOAD, "page": 0, "pageSize": 10}, "application/json"),
    ],
)
@pytest.mark.parametrize("row_cap", [5, 10_000])
def test_a_browser_gets_the_same_answer_gzipped(path, body, accept, row_cap, settings):
    """Capped at 5 rows, the list is kept for later requests with its gzip
    (the third request is the first answered from it); at 10,000 it is
    compressed for each answer."""
    settings.SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT = row_cap
    plain = post(path, body, HTTP_ACCEPT=accept)
    assert not plain.has_header("Content-Encoding")
    for _ in range(3):
        packed = post(path, body, HTTP_ACCEPT=accept, HTTP_ACCEPT_ENCODING=BROWSER)
        assert unpacked(packed) == plain.content
        assert len(packed.content) < len(plain.content)
        assert "Accept-Encoding" in packed["Vary"] and "Accept-Encoding" in plain["Vary"]
        assert packed.get("X-Total-Count") == plain.get("X-Total-Count")
        assert packed["Content-Type"] == plain["Content-Type"]


@pytest.mark.usefixtures("indexed_sample")
def test_a_kept_list_is_compressed_once_for_every_browser(settings, monkeypatch):
    """The 10,000-row list takes ~0.2 s to compress; sixteen dashboards
    opening at once share one."""
    settings.SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT = 5
    levels = []

    def counted(data: bytes, level: int) -> bytes:
        levels.append(level)
        return real(data, level)

    real = compression.gzip_bytes
    monkeypatch.setattr(compression, "gzip_bytes", counted)
    answers = [
        post("/filterdataproducts", FIRST_LOAD, HTTP_ACCEPT_ENCODING=BROWSER).content
        for _ in range(6)
    ]
    # The first two are compressed as they go; from the third the kept list is.
    assert levels == [compression.EACH_ANSWER_LEVEL] * 2 + [compression.KEPT_LEVEL]
    assert answers[2] == answers[3] == answers[4] == answers[5]
    assert len({gzip.decompress(answer) for answer in answers}) == 1


@pytest.mark.usefixtures("indexed_sample")
@pytest.mark.parametrize("accepted", ["", "identity", "gzip;q=0", "br", "*;q=0, deflate"])
@pytest.mark.parametrize("row_cap", [5, 10_000])
def test_clients_that_do_not_accept_gzip_get_plain_json(accepted, row_cap, settings):
    settings.SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT = row_cap
    for _ in range(3):  # the kept list too
        response = post("/filterdataproducts", FIRST_LOAD, HTTP_ACCEPT_ENCODING=accepted)
        assert not response.has_header("Content-Encoding")
        assert int(response["Content-Length"]) == len(response.content)
        assert len(response.json()) == min(row_cap, 12)


@pytest.mark.usefixtures("indexed_sample")
@pytest.mark.parametrize("row_cap", [5, 10_000])
def test_an_operator_may_turn_gzip_off(row_cap, settings):
    """For an ingress that compresses, or a machine whose CPU is dearer than
    its bandwidth (DPD_GZIP_ANSWERS=false)."""
    settings.SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT = row_cap
    settings.DPD_GZIP_ANSWERS = False
    for _ in range(3):  # the kept list too
        response = post("/filterdataproducts", FIRST_LOAD, HTTP_ACCEPT_ENCODING=BROWSER)
        assert not response.has_header("Content-Encoding")
        assert "Accept-Encoding" not in response.get("Vary", "")
        assert len(response.json()) == min(row_cap, 12)


@pytest.mark.usefixtures("upstream_catalogue")
def test_downloads_are_never_compressed_and_still_resume():
    whole = APIClient().post(
        "/download", {"execution_block": EB15}, format="json", HTTP_ACCEPT_ENCODING=BROWSER
    )
    data = b"".join(whole.streaming_content)
    assert whole.status_code == 200 and not whole.has_header("Content-Encoding")
    assert int(whole["Content-Length"]) == len(data) and data[257:262] == b"ustar"
    rest = APIClient().post(
        "/download",
        {"execution_block": EB15},
        format="json",
        HTTP_ACCEPT_ENCODING=BROWSER,
        HTTP_RANGE="bytes=1000-",
    )
    assert rest.status_code == 206 and not rest.has_header("Content-Encoding")
    assert b"".join(rest.streaming_content) == data[1000:]


@pytest.mark.parametrize(
    ("header", "accepts"),
    [
        ("gzip", True),
        ("GZip", True),
        ("deflate, gzip;q=0.5", True),
        ("x-gzip", True),
        ("br, *;q=0.1", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("gzip;q=0, *", False),  # named, and refused: the wildcard is for the rest
        ("*;q=0", False),
        ("gzip;q=nonsense", False),
        ("identity", False),
        ("", False),
        (",;,", False),
    ],
)
def test_accept_encoding_is_read_with_its_weights(header, accepts):
    request = RequestFactory().get("/", HTTP_ACCEPT_ENCODING=header)
    assert compression.accepts_gzip(request) is accepts


@pytest.fixture
def served_catalogue(tmp_path, transactional_db, settings):
    """gunicorn as runservice starts it, on the sample volume and 40 blocks
    more (36 open products), lists capped at 30 rows (~60 KB): a list asked
    twice is kept, with its gzip."""
    if connection.vendor != "postgresql":
        pytest.fail("the serving tests share the test database with a server: PostgreSQL only")
    root = tmp_path / "volume"
    build_sample_volume(root, synthetic_blocks=40)
    settings.PERSISTENT_STORAGE_PATH = str(root)
    assert index_run(IndexRun.Trigger.COMMAND).status == "completed"
    with server(
        root, tmp_path, workers=1, SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT="30"
    ) as (_, port):
        yield f"http://127.0.0.1:{port}"


def curl(url: str, body: dict, *options: str) -> bytes:
    argv = ["curl", "-sS", *options, "-H", "Content-Type: application/json"]
    return subprocess.run(
        [*argv, "--data", json.dumps(body), url], capture_output=True, check=True
    ).stdout


def test_scripts_and_curl_read_the_same_lists_from_a_real_server(served_catalogue):
    """`requests` asks for gzip and unpacks it unseen; curl asks for nothing
    unless told (--compressed); a download stays a plain tar for both."""
    url = served_catalogue
    for path, body in [("/filterdataproducts", FIRST_LOAD), ("/dataproductsearch", WIDE)]:
        for _ in range(3):  # the grid's list is kept from the second request on
            script = requests.post(url + path, json=body, timeout=30)
            assert script.status_code == 200
            assert script.headers["Content-Encoding"] == "gzip"
            head, _, rows = curl(url + path, body, "-D", "-").partition(b"\r\n\r\n")
            assert b"content-encoding" not in head.lower()
            assert script.json() == json.loads(rows) and len(script.json()) == 30
            compressed = curl(url + path, body, "--compressed")
            assert json.loads(compressed) == script.json()

    uid = script.json()[0]["uid"]
    with requests.post(url + "/download", json={"uid": uid}, stream=True, timeout=30) as archive:
        data = archive.raw.read()  # the bytes as sent, not unpacked by requests
        assert archive.status_code == 200 and "Content-Encoding" not in archive.headers
        assert int(archive.headers["Content-Length"]) == len(data)
        assert data[257:262] == b"ustar"
