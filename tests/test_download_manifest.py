"""The checksum manifest at the end of every /download archive, checked with
the real `tar` and `sha256sum`, as a user would."""

import os
import shutil
import subprocess
import tarfile

import pytest
from django.db import connection

from dpd import checksums

pytestmark = pytest.mark.usefixtures("upstream_catalogue")

EB15 = "eb-test-20200325-00001"
NOTEBOOK = "eb-notebook-20240201-54576"
VR = f"{NOTEBOOK}/ska-sdp/pb-notebookvr-20240201-54576"


def archive(client, body, **headers) -> bytes:
    response = client.post("/download", body, format="json", **headers)
    assert response.status_code in (200, 206)
    return b"".join(response.streaming_content)


def extract(data: bytes, where) -> list[str]:
    where.mkdir()
    (where / "x.tar").write_bytes(data)
    subprocess.run(["tar", "-xf", "x.tar"], cwd=where, check=True)
    (where / "x.tar").unlink()
    return subprocess.run(["tar", "-tf", "-"], input=data, capture_output=True, check=True).stdout


def inside_manifest(full: bytes) -> int:
    """An offset inside the notebook archive's manifest text: a range from
    there skips every file, and its manifest needs all their digests (the
    end blocks and record padding after it need none)."""
    return full.rindex(f"{NOTEBOOK}/ska-sdp/MANIFEST.sha256".encode()) + 512 + 10


def check(folder) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sha256sum", "--strict", "-c", "MANIFEST.sha256"],
        cwd=folder,
        capture_output=True,
        text=True,
    )


@pytest.fixture(autouse=True)
def _tools():
    if not (shutil.which("tar") and shutil.which("sha256sum")):
        pytest.fail("GNU tar and sha256sum (coreutils) are needed")


def test_sha256sum_passes_on_an_extracted_archive_and_fails_on_a_corrupted_one(
    anonymous, upstream_volume, tmp_path
):
    folder = upstream_volume / EB15
    (folder / "empty").write_bytes(b"")
    (folder / "exactly-512").write_bytes(os.urandom(512))
    os.symlink("/etc/passwd", folder / "escape")
    names = extract(archive(anonymous, {"execution_block": EB15}), tmp_path / "x")
    assert names.splitlines()[-1] == f"{EB15}/MANIFEST.sha256".encode()
    result = check(tmp_path / "x" / EB15)
    assert result.returncode == 0, result.stdout + result.stderr
    listed = result.stdout.splitlines()
    assert "empty: OK" in listed and "exactly-512: OK" in listed
    assert "ska-sub-system/scan_id_1/pb_id_1/TestDataFile1.txt: OK" in listed
    assert not any(line.startswith(("escape", "ska-sub-system:")) for line in listed)
    corrupted = tmp_path / "x" / EB15 / "exactly-512"
    corrupted.write_bytes(b"\xff" + corrupted.read_bytes()[1:])
    result = check(tmp_path / "x" / EB15)
    assert result.returncode != 0
    assert "exactly-512: FAILED" in result.stdout


def test_an_execution_block_keeps_its_manifest_in_the_sub_products_common_folder(
    anonymous, tmp_path
):
    names = extract(archive(anonymous, {"execution_block": NOTEBOOK}), tmp_path / "x")
    assert names.splitlines()[-1] == f"{NOTEBOOK}/ska-sdp/MANIFEST.sha256".encode()
    result = check(tmp_path / "x" / NOTEBOOK / "ska-sdp")
    assert result.returncode == 0, result.stdout
    assert "pb-notebookvr-20240201-54576/output.scan-1.ms/table.dat: OK" in result.stdout


def test_a_resumed_download_on_a_cold_cache_ends_with_the_same_manifest(
    anonymous, upstream_volume, tmp_path
):
    (upstream_volume / VR / "big.bin").write_bytes(os.urandom(300_000))
    full = archive(anonymous, {"execution_block": NOTEBOOK})
    for offset in (700, len(full) // 2, len(full) - 3000):
        checksums.forget_all()
        rest = archive(anonymous, {"execution_block": NOTEBOOK}, HTTP_RANGE=f"bytes={offset}-")
        assert full[:offset] + rest == full
    extract(full, tmp_path / "x")
    assert check(tmp_path / "x" / NOTEBOOK / "ska-sdp").returncode == 0


@pytest.mark.parametrize("remembered", [200_000, 0], ids=["cache", "no-cache"])
def test_a_resume_in_another_process_takes_large_files_digests_from_the_database(
    anonymous, upstream_volume, tmp_path, monkeypatch, settings, remembered
):
    settings.DPD_CHECKSUM_CACHE_ENTRIES = remembered
    big = upstream_volume / VR / "big.bin"
    big.write_bytes(os.urandom(checksums.SHARED_MIN_BYTES + 1000))
    full = archive(anonymous, {"execution_block": NOTEBOOK})
    hashed = []
    file_digest = checksums.file_digest
    monkeypatch.setattr(
        checksums, "file_digest", lambda fd, size: hashed.append(size) or file_digest(fd, size)
    )
    tail = inside_manifest(full)

    checksums.forget_all()  # another worker or pod: nothing remembered here
    rest = archive(anonymous, {"execution_block": NOTEBOOK}, HTTP_RANGE=f"bytes={tail}-")

    assert full[:tail] + rest == full
    assert hashed and big.stat().st_size not in hashed  # the small files only

    big.write_bytes(os.urandom(big.stat().st_size))  # other bytes, same size
    changed = archive(anonymous, {"execution_block": NOTEBOOK})
    hashed.clear()
    checksums.forget_all()
    rest = archive(anonymous, {"execution_block": NOTEBOOK}, HTTP_RANGE=f"bytes={tail}-")
    assert changed[:tail] + rest == changed  # the new file's digest, not the old
    extract(changed, tmp_path / "x")
    assert check(tmp_path / "x" / NOTEBOOK / "ska-sdp").returncode == 0


@pytest.mark.django_db(transaction=True)
def test_without_the_digest_table_a_resume_hashes_and_ends_with_its_manifest(
    anonymous, upstream_volume, tmp_path, caplog
):
    """Code deployed before its migration (or a database refusing the
    table): downloads go on, the digests are computed instead."""
    (upstream_volume / VR / "big.bin").write_bytes(os.urandom(checksums.SHARED_MIN_BYTES))
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE dpd_file_digest RENAME TO dpd_file_digest_away")
    try:
        full = archive(anonymous, {"execution_block": NOTEBOOK})
        tail = inside_manifest(full)
        checksums.forget_all()
        rest = archive(anonymous, {"execution_block": NOTEBOOK}, HTTP_RANGE=f"bytes={tail}-")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE dpd_file_digest_away RENAME TO dpd_file_digest")
    assert full[:tail] + rest == full
    assert "file digests not recorded in the database" in caplog.text
    assert "file digests not read from the database (hashing instead)" in caplog.text
    extract(full, tmp_path / "x")
    assert check(tmp_path / "x" / NOTEBOOK / "ska-sdp").returncode == 0


def test_awkward_file_names_are_escaped_as_sha256sum_reads_them(
    anonymous, upstream_volume, tmp_path
):
    folder = upstream_volume / EB15
    for name in ("back\\slash", "new\nline", "sp ace", "caf\u00e9", "  lead"):
        (folder / name).write_bytes(name.encode() * 3)
    extract(archive(anonymous, {"execution_block": EB15}), tmp_path / "x")
    result = check(tmp_path / "x" / EB15)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": OK") == 9  # the five, three test files and the metadata


def test_a_product_with_its_own_manifest_keeps_it_and_gets_ours_beside_it(
    anonymous, upstream_volume, tmp_path
):
    theirs = b"their own checksums\n"
    (upstream_volume / EB15 / "MANIFEST.sha256").write_bytes(theirs)
    data = archive(anonymous, {"execution_block": EB15})
    names = extract(data, tmp_path / "x").splitlines()
    assert names[-1] == f"{EB15}/MANIFEST.dpd.sha256".encode()
    assert (tmp_path / "x" / EB15 / "MANIFEST.sha256").read_bytes() == theirs
    result = subprocess.run(
        ["sha256sum", "-c", "MANIFEST.dpd.sha256"], cwd=tmp_path / "x" / EB15, capture_output=True
    )
    assert result.returncode == 0


def test_a_range_ending_before_the_manifest_hashes_nothing(anonymous, upstream_volume):
    # Nothing to hash: the client asked for no manifest byte.
    checksums.forget_all()
    data = archive(anonymous, {"execution_block": EB15}, HTTP_RANGE="bytes=0-1023")
    assert len(data) == 1024
    assert not checksums._digests


def test_the_manifest_member_is_a_plain_file_of_the_announced_size(anonymous, tmp_path):
    import io

    data = archive(anonymous, {"execution_block": EB15})
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        manifest = tar.getmembers()[-1]
        assert manifest.isfile() and manifest.mode == 0o644
        text = tar.extractfile(manifest).read().decode()
    assert len(text) == manifest.size
    assert all(len(line.split("  ", 1)[0]) == 64 for line in text.splitlines())
