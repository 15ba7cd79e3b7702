"""POST /download (reference 2.9, 6, 7): a tar stream decided before its first byte."""

import io
import json
import logging
import os
import tarfile

import pytest

from dpd.api.product_serializers import MISSING_IDENTIFIER
from dpd.download import DownloadInterrupted
from dpd.models import DataProduct
from dpd.services import product_ingest_folder, product_ingest_metadata
from tests.file_access import as_a_user_without_root_file_access
from tests.product_fixtures import UID

pytestmark = pytest.mark.usefixtures("upstream_catalogue")

EB15 = "eb-test-20200325-00001"
NOTEBOOK = "eb-notebook-20240201-54576"
PO = f"{NOTEBOOK}/ska-sdp/pb-notebookpo-20240201-54576"
VR = f"{NOTEBOOK}/ska-sdp/pb-notebookvr-20240201-54576"


def download(client, body):
    return client.post("/download", body, format="json")


def members(response) -> dict[str, tarfile.TarInfo]:
    assert response.status_code == 200
    assert response.streaming
    data = b"".join(response.streaming_content)
    assert len(data) % tarfile.RECORDSIZE == 0
    assert int(response["Content-Length"]) == len(data)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        found = archive.getmembers()
        names = [member.name for member in found]
        assert len(names) == len(set(names)), "a member appears twice"
        for member in found:
            if member.isfile():
                assert len(archive.extractfile(member).read()) == member.size
        # The checksum manifest comes last (tests/test_download_manifest.py).
        assert found[-1].name.rsplit("/", 1)[-1] == "MANIFEST.sha256"
        return {member.name: member for member in found[:-1]}


@pytest.mark.parametrize(
    "execution_block",
    [EB15, "eb-m001-20221212-12345"],
    ids=["product-15", "product-2"],
)
def test_a_download_by_execution_block_sends_the_whole_folder(
    anonymous, upstream_volume, execution_block
):
    response = download(anonymous, {"execution_block": execution_block})
    assert response["Content-Type"] == "application/x-tar"
    assert response["Content-Disposition"] == f'attachment; filename="{execution_block}.tar"'
    found = members(response)
    on_disk = {execution_block} | {
        str(path.relative_to(upstream_volume))
        for path in (upstream_volume / execution_block).rglob("*")
    }
    assert set(found) == on_disk
    assert found[execution_block].isdir()
    assert found[f"{execution_block}/ska-data-product.yaml"].isfile()
    data_file = found[f"{execution_block}/ska-sub-system/scan_id_1/pb_id_1/TestDataFile1.txt"]
    assert data_file.size == 19
    assert found[f"{execution_block}/ska-sub-system"].isdir()


def test_member_names_are_relative_to_the_volume_root(anonymous):
    for name in members(download(anonymous, {"execution_block": EB15})):
        assert not name.startswith(("/", "./"))
        assert name.split("/")[0] == EB15


def test_an_execution_block_with_two_sub_products_sends_both_folders(anonymous):
    found = members(download(anonymous, {"execution_block": NOTEBOOK}))
    assert PO in found and VR in found
    assert f"{PO}/eb-notebook-20240201-54576_pointing_offsets.txt" in found
    assert f"{VR}/output.scan-1.ms/table.dat" in found
    assert all(name.startswith((PO, VR)) for name in found)


def test_a_download_by_uid_sends_only_that_sub_product(anonymous):
    response = download(anonymous, {"uid": UID[12]})
    assert response["Content-Disposition"] == (
        'attachment; filename="pb-notebookvr-20240201-54576.tar"'
    )
    found = members(response)
    assert VR in found
    assert not any(name.startswith(PO) for name in found)


def test_the_uid_wins_when_the_dashboard_sends_both(anonymous):
    body = {
        "execution_block": NOTEBOOK,
        "uid": UID[12],
        "relativePathName": VR,
        "metaDataFile": f"{VR}/ska-data-product.yaml",
    }
    found = members(download(anonymous, body))
    assert not any(name.startswith(PO) for name in found)


def test_nested_product_folders_send_each_file_once(anonymous, upstream_volume):
    outer = upstream_volume / "eb-nest-20240101-00001"
    inner = outer / "ska-sdp" / "pb-nest"
    inner.mkdir(parents=True)
    for folder in (outer, inner):
        (folder / "ska-data-product.yaml").write_text("execution_block: eb-nest-20240101-00001\n")
    (inner / "data.bin").write_bytes(b"\x00" * 1000)
    product_ingest_folder("eb-nest-20240101-00001")
    product_ingest_folder("eb-nest-20240101-00001/ska-sdp/pb-nest")
    found = members(download(anonymous, {"execution_block": "eb-nest-20240101-00001"}))
    assert found["eb-nest-20240101-00001/ska-sdp/pb-nest/data.bin"].size == 1000


def test_symlinks_are_stored_not_followed(anonymous, upstream_volume):
    folder = upstream_volume / EB15
    os.symlink("/etc/passwd", folder / "escape")
    os.symlink("/etc", folder / "escape-dir")
    found = members(download(anonymous, {"execution_block": EB15}))
    assert found[f"{EB15}/escape"].issym()
    assert found[f"{EB15}/escape"].linkname == "/etc/passwd"
    assert found[f"{EB15}/escape-dir"].issym()
    assert not any(name.startswith(f"{EB15}/escape-dir/") for name in found)


def test_a_large_file_streams_in_bounded_chunks(anonymous, upstream_volume, settings):
    settings.STREAM_CHUNK_SIZE = 4096
    payload = os.urandom(300_000)
    (upstream_volume / EB15 / "big.bin").write_bytes(payload)
    response = download(anonymous, {"uid": UID[15]})
    chunks = list(response.streaming_content)
    # At most a chunk plus what completes it (and, at the end, the tar's record padding).
    assert max(len(chunk) for chunk in chunks) <= 2 * 4096 + tarfile.RECORDSIZE
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as archive:
        assert archive.extractfile(f"{EB15}/big.bin").read() == payload


@pytest.mark.parametrize(
    "body",
    [{"uid": "00000000-1111-2222-3333-444444444444"}, {"execution_block": "eb-none-00000000-0"}],
    ids=["uid", "execution-block"],
)
def test_an_unknown_product_is_a_404_before_any_byte(anonymous, body):
    response = download(anonymous, body)
    assert response.status_code == 404
    assert not response.streaming
    assert response.json()["detail"].startswith("File not found: no data product with ")


def test_a_hidden_product_downloads_like_a_missing_one(anonymous, member):
    response = download(anonymous, {"uid": UID[13]})
    assert response.status_code == 404
    assert response.json() == {"detail": f"File not found: no data product with uid {UID[13]}"}
    assert download(member, {"uid": UID[13]}).status_code == 200


def test_a_product_without_files_is_a_404(anonymous):
    product = product_ingest_metadata({"execution_block": "eb-test-20191031-99999"})
    response = download(anonymous, {"uid": str(product.uid)})
    assert response.status_code == 404
    assert "has no files on the volume" in response.json()["detail"]


def test_a_product_whose_folder_was_deleted_since_indexing_is_a_404(anonymous, upstream_volume):
    import shutil

    shutil.rmtree(upstream_volume / EB15)
    response = download(anonymous, {"uid": UID[15]})
    assert response.status_code == 404
    assert response.json() == {"detail": f"File not found: {EB15} is no longer on the volume"}


def test_a_row_pointing_outside_the_volume_is_never_sent(anonymous):
    DataProduct.objects.filter(uid=UID[15]).update(dataproduct_file="../../..")
    response = download(anonymous, {"uid": UID[15]})
    assert response.status_code == 404
    assert "not inside the volume" in response.json()["detail"]


def test_a_file_vanishing_mid_stream_cuts_the_tar_with_a_logged_error(
    anonymous, upstream_volume, settings, caplog
):
    settings.STREAM_CHUNK_SIZE = 512
    folder = upstream_volume / EB15 / "zz"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"A" * 4096)
    (folder / "b.bin").write_bytes(b"B" * 4096)
    response = download(anonymous, {"execution_block": EB15})
    stream = iter(response.streaming_content)
    received = b""
    while b"A" * 512 not in received:  # a.bin is streaming: its folder was listed
        received += next(stream)
    os.remove(folder / "b.bin")
    with caplog.at_level(logging.ERROR, logger="dpd.download"), pytest.raises(DownloadInterrupted):
        for chunk in stream:
            received += chunk
    assert f"{EB15}/zz/b.bin" in caplog.text
    # No end-of-archive marker; under a server the chunked body is not terminated either.
    assert not received.endswith(bytes(2 * tarfile.BLOCKSIZE))
    with tarfile.open(fileobj=io.BytesIO(received)) as archive:
        assert f"{EB15}/zz/b.bin" not in archive.getnames()


def test_neither_identifier_answers_the_reference_400(anonymous):
    response = download(anonymous, {"relativePathName": EB15})
    assert response.status_code == 400
    assert response.json() == {"detail": MISSING_IDENTIFIER}


@pytest.mark.parametrize(
    "body",
    ['{"uid": ', json.dumps({"uid": "not-a-uid"}), json.dumps({"uid": 12}), "[]"],
    ids=["malformed", "invalid-uid", "wrong-type", "not-an-object"],
)
def test_bad_bodies_answer_422_in_json(anonymous, body):
    response = anonymous.generic("POST", "/download", body, content_type="application/json")
    assert response.status_code == 422
    assert "detail" in response.json()


def test_an_accept_header_asking_for_a_tar_still_gets_errors_in_json(anonymous):
    response = anonymous.post(
        "/download", {"uid": UID[2][:-4]}, format="json", HTTP_ACCEPT="application/x-tar"
    )
    assert response.status_code == 422
    assert response["Content-Type"] == "application/json"


def test_a_body_without_content_type_is_read_as_json(anonymous):
    # What requests.post(url, data=json.dumps(body)) sends.
    response = anonymous.generic("POST", "/download", json.dumps({"uid": UID[15]}), content_type="")
    assert EB15 in members(response)


def test_a_form_body_answers_422_in_json_before_any_byte(anonymous):
    response = anonymous.generic(
        "POST", "/download", f"uid={UID[15]}", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 422
    assert not response.streaming
    assert response.json()["detail"].startswith("The request body must be JSON")


def test_a_request_without_a_body_answers_422(anonymous):
    response = anonymous.generic("POST", "/download", "", content_type="application/json")
    assert response.status_code == 422
    assert response.json()["detail"] == "The request body is missing; send a JSON object."


def test_a_get_answers_405_with_the_upstream_text(anonymous):
    response = anonymous.get("/download")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}


@pytest.mark.parametrize("change", ["file grown", "file removed"])
def test_a_folder_changing_after_the_length_was_announced_cuts_the_tar(
    anonymous, upstream_volume, settings, caplog, change
):
    # The Content-Length comes from a walk before the first byte; a stream that
    # would send other bytes than announced is cut (logged), so the client
    # sees a short body, never a wrong archive under the announced length.
    settings.STREAM_CHUNK_SIZE = 512
    folder = upstream_volume / EB15 / "zz"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"A" * 4096)
    response = download(anonymous, {"execution_block": EB15})
    announced = int(response["Content-Length"])
    if change == "file grown":
        (folder / "a.bin").write_bytes(b"A" * 4 * tarfile.RECORDSIZE)
    else:
        (folder / "a.bin").unlink()
    received = b""
    with caplog.at_level(logging.ERROR, logger="dpd.download"), pytest.raises(DownloadInterrupted):
        for chunk in response.streaming_content:
            received += chunk
    assert len(received) < announced
    assert "download of" in caplog.text and EB15 in caplog.text


def test_a_file_added_after_the_walk_is_not_in_the_archive(anonymous, upstream_volume):
    # The archive is what the walk before the first byte saw: whole, exactly
    # as long as announced, and the same bytes its ETag names.
    response = download(anonymous, {"execution_block": EB15})
    (upstream_volume / EB15 / "late.bin").write_bytes(b"L" * 4 * tarfile.RECORDSIZE)
    found = members(response)
    assert f"{EB15}/late.bin" not in found
    assert f"{EB15}/ska-data-product.yaml" in found


def test_an_unreadable_folder_is_a_404_before_any_byte(anonymous, upstream_volume):
    folder = upstream_volume / EB15 / "locked"
    folder.mkdir()
    (folder / "x.bin").write_bytes(b"x")
    folder.chmod(0)
    try:
        with as_a_user_without_root_file_access():
            response = download(anonymous, {"execution_block": EB15})
    finally:
        folder.chmod(0o755)
    assert response.status_code == 404
    assert response.json()["detail"] == f"File not found: {EB15}/locked cannot be read"
