"""Resuming a /download: Range, 206/416, ETag and If-Range on a deterministic tar."""

import io
import os
import random
import tarfile
from pathlib import Path

import pytest

from dpd import checksums
from dpd.tar_layout import gnu_header
from tests.product_fixtures import UID

pytestmark = pytest.mark.usefixtures("upstream_catalogue")

NOTEBOOK = "eb-notebook-20240201-54576"
VR = f"{NOTEBOOK}/ska-sdp/pb-notebookvr-20240201-54576"
BODY = {"execution_block": NOTEBOOK}


def write_edge_members(folder: Path) -> None:
    """The members whose sizes sit on block edges, a long name and a symlink."""
    (folder / "empty").write_bytes(b"")
    (folder / "exactly-512").write_bytes(os.urandom(512))
    (folder / "odd").write_bytes(os.urandom(70_001))
    (folder / ("long-" + "n" * 120)).write_bytes(b"a long name\n")
    os.symlink("output.scan-1.ms", folder / "link")


@pytest.fixture
def awkward_files(upstream_volume):
    """Sub-products plus the members whose sizes sit on block edges."""
    folder = upstream_volume / VR
    write_edge_members(folder)
    return folder


def fetch(client, body=BODY, **headers):
    response = client.post("/download", body, format="json", **headers)
    data = b"".join(response.streaming_content) if response.streaming else b""
    return response, data


def test_a_whole_download_says_it_takes_ranges_and_names_its_version(anonymous, awkward_files):
    response, data = fetch(anonymous)
    assert response.status_code == 200
    assert response["Accept-Ranges"] == "bytes"
    assert response["ETag"].startswith('"') and response["ETag"].endswith('"')
    assert int(response["Content-Length"]) == len(data)
    again, same = fetch(anonymous)
    assert again["ETag"] == response["ETag"] and same == data


def test_resuming_at_twenty_random_offsets_gives_the_uninterrupted_bytes(
    anonymous, awkward_files, settings
):
    settings.STREAM_CHUNK_SIZE = 4096
    full_response, full = fetch(anonymous)
    etag = full_response["ETag"]
    offsets = random.Random(25).sample(range(1, len(full)), 20)
    for offset in offsets:
        checksums.forget_all()  # each resume as if served by a fresh process
        response, rest = fetch(anonymous, HTTP_RANGE=f"bytes={offset}-", HTTP_IF_RANGE=etag)
        assert response.status_code == 206, offset
        assert response["Content-Range"] == f"bytes {offset}-{len(full) - 1}/{len(full)}"
        assert int(response["Content-Length"]) == len(rest)
        assert full[:offset] + rest == full, f"resumed at {offset}"


def test_a_closed_range_is_exactly_those_bytes(anonymous, awkward_files):
    _, full = fetch(anonymous)
    for first, last in [(0, 0), (0, 511), (511, 1024), (1000, 70_000), (len(full) - 1, 10**12)]:
        response, part = fetch(anonymous, HTTP_RANGE=f"bytes={first}-{last}")
        assert response.status_code == 206
        assert part == full[first : last + 1]


def test_a_suffix_range_is_the_last_bytes(anonymous, awkward_files):
    _, full = fetch(anonymous)
    response, part = fetch(anonymous, HTTP_RANGE="bytes=-1500")
    assert response.status_code == 206 and part == full[-1500:]


def test_a_file_changed_between_two_ranged_requests_gets_a_fresh_200(anonymous, awkward_files):
    first, full = fetch(anonymous)
    (awkward_files / "odd").write_bytes(os.urandom(70_001))  # same size, new mtime
    os.utime(awkward_files / "odd", ns=(0, 10**18))
    response, fresh = fetch(anonymous, HTTP_RANGE="bytes=1000-", HTTP_IF_RANGE=first["ETag"])
    assert response.status_code == 200
    assert response["ETag"] != first["ETag"]
    assert len(fresh) == int(response["Content-Length"]) == len(full)
    assert fresh != full
    with tarfile.open(fileobj=io.BytesIO(fresh)) as archive:
        assert archive.extractfile(f"{VR}/odd").read() == (awkward_files / "odd").read_bytes()


@pytest.mark.parametrize(
    "change",
    ["renamed", "resized", "touched"],
)
def test_the_etag_changes_with_any_file(anonymous, awkward_files, change):
    before = fetch(anonymous)[0]["ETag"]
    path = awkward_files / "exactly-512"
    if change == "renamed":
        path.rename(awkward_files / "exactly-512b")
    elif change == "resized":
        path.write_bytes(b"x" * 513)
    else:
        os.utime(path, ns=(0, 123_456_789))
    assert fetch(anonymous)[0]["ETag"] != before


def test_an_if_range_with_a_date_or_a_weak_etag_gets_the_whole_archive(anonymous, awkward_files):
    first, full = fetch(anonymous)
    for validator in ("Sat, 05 Dec 2026 03:00:00 GMT", "W/" + first["ETag"], '"other"'):
        response, data = fetch(anonymous, HTTP_RANGE="bytes=10-", HTTP_IF_RANGE=validator)
        assert response.status_code == 200 and data == full


@pytest.mark.parametrize(
    "header",
    [
        "bytes=abc-",
        "bytes=5-2",
        "bytes=0-1,5-6",
        "items=0-5",
        "bytes=",
        "bytes=-",
        "bytes 0-5",
        "bytes=\u00bd-",
        "bytes=0x10-",
        "bytes=--5",
    ],
)
def test_malformed_and_multiple_ranges_get_the_whole_archive(anonymous, awkward_files, header):
    _, full = fetch(anonymous)
    response, data = fetch(anonymous, HTTP_RANGE=header)
    assert response.status_code == 200
    assert data == full


@pytest.mark.parametrize("first", ["{size}", "{size}0", "9" * 40, "9" * 5000])
def test_a_range_past_the_end_is_a_416_naming_the_length(anonymous, awkward_files, first):
    size = len(fetch(anonymous)[1])
    response, _ = fetch(anonymous, HTTP_RANGE=f"bytes={first.format(size=size)}-")
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{size}"
    assert response.json()["detail"].startswith("Range Not Satisfiable")


def test_a_zero_length_suffix_is_a_416(anonymous, awkward_files):
    response, _ = fetch(anonymous, HTTP_RANGE="bytes=-0")
    assert response.status_code == 416


def test_a_range_on_a_missing_product_is_still_a_404(anonymous):
    body = {"uid": "00000000-1111-2222-3333-444444444444"}
    response, _ = fetch(anonymous, body, HTTP_RANGE="bytes=0-")
    assert response.status_code == 404


def test_a_range_by_uid_resumes_a_sub_product(anonymous, awkward_files):
    _, full = fetch(anonymous, {"uid": UID[12]})
    response, rest = fetch(anonymous, {"uid": UID[12]}, HTTP_RANGE="bytes=600-")
    assert response.status_code == 206 and full[:600] + rest == full


@pytest.mark.parametrize(
    ("name", "linkname", "size"),
    [
        ("a/b.txt", "", 5),
        ("a/" + "x" * 150, "", 0),
        ("a/link", "t" * 140, 0),
        ("a/big", "", 9 * 1024**3),
    ],
    ids=["short", "long-name", "long-link", "over-8-gib"],
)
def test_header_blocks_are_what_tarfile_writes(name, linkname, size):
    member = tarfile.TarInfo(name)
    member.type = tarfile.SYMTYPE if linkname else tarfile.REGTYPE
    member.linkname = linkname
    member.size = size
    member.mode, member.uid, member.gid, member.mtime = 0o640, 1000, 1001, 1_700_000_000
    member.uname, member.gname = "alice", "staff"
    expected = member.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    built = gnu_header(
        name.encode(),
        0o100640,
        1000,
        1001,
        size,
        1_700_000_000,
        member.type,
        linkname.encode(),
        b"alice",
        b"staff",
    )
    # The member's own block is tarfile's; the ././@LongLink records before a
    # long name are GNU tar's (mode 0644, root's names), which
    # tests/test_tar_process.py compares with the real GNU tar.
    assert len(built) == len(expected)
    assert built[-tarfile.BLOCKSIZE :] == expected[-tarfile.BLOCKSIZE :]
    if len(built) == tarfile.BLOCKSIZE:
        assert built == expected
