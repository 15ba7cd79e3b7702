"""A whole /download of many small files comes from a GNU tar process
(dpd.tar_process): the same bytes as the Python path, so either resumes the
other, and a file changed since the walk still cuts the stream."""

import contextlib
import io
import os
import random
import tarfile
from pathlib import Path

import pytest

from dpd import checksums, tar_process
from dpd.download import DownloadInterrupted
from tests.test_download_resume import BODY, VR, write_edge_members

pytestmark = pytest.mark.usefixtures("upstream_catalogue")


@pytest.fixture(autouse=True)
def _gnu_tar():
    if tar_process.gnu_tar() is None:
        pytest.fail("GNU tar is needed")


@pytest.fixture
def awkward_files(upstream_volume):
    """Sub-products plus every kind of member whose header is not the plain one."""
    folder = upstream_volume / VR
    write_edge_members(folder)
    deep = folder / ("folder-" + "d" * 110)
    deep.mkdir()
    (deep / "in-a-long-folder").write_bytes(b"x" * 3000)
    os.symlink("t" * 140, folder / "link-to-a-long-name")
    (folder / "back\\slash").write_bytes(b"b")
    (folder / "-looks-like-an-option").write_bytes(b"o")
    (folder / "hard").write_bytes(b"h" * 3000)
    os.link(folder / "hard", folder / "hard-too")  # sent twice, as the walk counts it
    (folder / "setuid").write_bytes(b"s")
    (folder / "setuid").chmod(0o4755)
    (folder / "from-1969").write_bytes(b"old")
    os.utime(folder / "from-1969", (0, -86_400 * 365))  # a base-256 mtime
    if os.geteuid() == 0:
        os.chown(folder / "odd", 12345, 54321)  # an owner without a name
    return folder


@pytest.fixture
def tar_runs(monkeypatch) -> list[Path]:
    """Each tar process started, by the root it archived."""
    runs: list[Path] = []
    start = tar_process.TarProcess.__init__

    def counted(self, root, **options):
        runs.append(Path(os.fsdecode(root)))
        start(self, root, **options)

    monkeypatch.setattr(tar_process.TarProcess, "__init__", counted)
    return runs


def fetch(client, body=BODY, **headers):
    response = client.post("/download", body, format="json", **headers)
    data = b"".join(response.streaming_content) if response.streaming else b""
    return response, data


@pytest.mark.parametrize("read_ahead", [0, 32], ids=["tar-after-the-walk", "tar-during-the-walk"])
def test_tar_sends_the_bytes_the_python_path_sends(
    anonymous, awkward_files, settings, tar_runs, read_ahead
):
    settings.DPD_TAR_PROCESS_MIN_FILES = 0  # never tar
    python, python_bytes = fetch(anonymous)
    assert not tar_runs
    checksums.forget_all()  # the manifest's digests come from tar's bytes
    settings.DPD_TAR_PROCESS_MIN_FILES = 1
    settings.DPD_TAR_READ_AHEAD_MIB = read_ahead
    from_tar = anonymous.post("/download", BODY, format="json")
    assert len(tar_runs) == (1 if read_ahead else 0)  # the walk is over, no byte is sent
    tar_bytes = b"".join(from_tar.streaming_content)
    assert len(tar_runs) == 1
    assert from_tar["ETag"] == python["ETag"]
    assert int(from_tar["Content-Length"]) == len(tar_bytes) == len(python_bytes)
    assert tar_bytes == python_bytes
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as archive:
        names = archive.getnames()
    assert f"{VR}/{'long-' + 'n' * 120}" in names and f"{VR}/hard-too" in names


def test_a_download_from_tar_resumes_on_the_python_path(
    anonymous, awkward_files, settings, tar_runs
):
    settings.DPD_TAR_PROCESS_MIN_FILES = 1
    whole, data = fetch(anonymous)
    assert len(tar_runs) == 1
    for offset in random.Random(25).sample(range(1, len(data)), 8):
        checksums.forget_all()  # as if another process served the resume
        response, rest = fetch(
            anonymous, HTTP_RANGE=f"bytes={offset}-", HTTP_IF_RANGE=whole["ETag"]
        )
        assert response.status_code == 206
        assert data[:offset] + rest == data, offset
    assert len(tar_runs) == 1  # ranges never start tar


def test_few_files_and_ranges_stay_on_the_python_path(anonymous, awkward_files, settings, tar_runs):
    response, data = fetch(anonymous)  # the default: tar from 1000 files on
    assert response.status_code == 200 and data
    assert not tar_runs
    settings.DPD_TAR_PROCESS_MIN_FILES = 1
    response, rest = fetch(anonymous, HTTP_RANGE="bytes=1-")
    assert response.status_code == 206 and rest == data[1:]
    assert not tar_runs
    response, same = fetch(anonymous, HTTP_RANGE="bytes=0-")  # the whole archive
    assert response.status_code == 206 and same == data
    assert len(tar_runs) == 1


def _grow(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"more")


def _touch(path: Path) -> None:
    os.utime(path, (0, path.stat().st_mtime + 10))


def _symlink(path: Path) -> None:
    path.unlink()
    os.symlink("exactly-512", path)


# Each change a header shows (an inode alone does not: see dpd.tar_process).
each_change = pytest.mark.parametrize(
    "change",
    [_grow, _touch, lambda path: path.chmod(0o600), Path.unlink, _symlink],
    ids=["grown", "touched", "chmod", "removed", "now-a-symlink"],
)


@each_change
def test_a_file_changed_since_the_walk_cuts_the_tar_stream(
    anonymous, awkward_files, settings, caplog, tar_runs, change
):
    settings.DPD_TAR_PROCESS_MIN_FILES = 1
    settings.DPD_TAR_READ_AHEAD_MIB = 0  # tar starts with the stream, after the change
    victim = awkward_files / "odd"
    response = anonymous.post("/download", BODY, format="json")  # the walk; no byte yet
    announced = int(response["Content-Length"])
    folder = victim.parent.stat()
    change(victim)
    # Removing or replacing the file moves its folder's mtime too; when that
    # crossed a whole second (a header holds seconds) since the fixture wrote
    # the folder, the stream was cut earlier, at the folder's header (1 CI run
    # in 4). Kept as the walk saw it, the folder leaves the cut to the file.
    os.utime(victim.parent, ns=(folder.st_atime_ns, folder.st_mtime_ns))
    received = b""
    with caplog.at_level("ERROR", logger="dpd.download"), pytest.raises(DownloadInterrupted):
        for chunk in response.streaming_content:
            received += chunk
    assert len(tar_runs) == 1
    assert len(received) < announced
    assert "download of" in caplog.text and "odd" in caplog.text
    # Cut before the changed member's header: what came is an archive without it.
    with tarfile.open(fileobj=io.BytesIO(received)) as archive:
        assert f"{VR}/odd" not in archive.getnames()


@each_change
def test_a_file_changed_after_its_lstat_cuts_a_tar_started_during_the_walk(
    anonymous, awkward_files, settings, monkeypatch, tar_runs, change
):
    """tar reads ahead while the walk runs; a file changed between the walk's
    lstat and tar's (its name reaches tar after the walk saw it) is caught."""
    settings.DPD_TAR_PROCESS_MIN_FILES = 1
    victim = awkward_files / "odd"
    folder = victim.parent.stat()
    watch = tar_process.EarlyTar.__call__

    def change_before_tar_sees_it(self, members, done):
        if any(m.name.endswith(b"/odd") for m in members[self.fed :]):
            change(victim)
            os.utime(victim.parent, ns=(folder.st_atime_ns, folder.st_mtime_ns))
        watch(self, members, done)

    monkeypatch.setattr(tar_process.EarlyTar, "__call__", change_before_tar_sees_it)
    response = anonymous.post("/download", BODY, format="json")
    received = b""
    with pytest.raises(DownloadInterrupted):
        for chunk in response.streaming_content:
            received += chunk
    assert len(tar_runs) == 1
    assert len(received) < int(response["Content-Length"])
    with tarfile.open(fileobj=io.BytesIO(received)) as archive:
        assert f"{VR}/odd" not in archive.getnames()


def test_a_download_given_up_leaves_no_tar_running(anonymous, awkward_files, settings, tar_runs):
    settings.DPD_TAR_PROCESS_MIN_FILES = 1
    settings.STREAM_CHUNK_SIZE = 512
    response = anonymous.post("/download", BODY, format="json")
    stream = iter(response.streaming_content)
    next(stream)
    assert tar_children()
    response.close()  # what the server does when the client goes away
    assert len(tar_runs) == 1
    assert not tar_children()


def tar_children() -> list[int]:
    """The tar processes this test process started and has not reaped."""
    found = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        for pid in children:
            with contextlib.suppress(FileNotFoundError):  # reaped meanwhile
                if Path(f"/proc/{pid}/comm").read_text().strip() == "tar":
                    found.append(int(pid))
    return found


def test_a_response_never_sent_leaves_no_tar_running(anonymous, awkward_files, settings, tar_runs):
    settings.DPD_TAR_PROCESS_MIN_FILES = 1
    response = anonymous.post("/download", BODY, format="json")
    assert tar_children()  # started during the walk
    response.close()  # the client went away before the first byte
    assert len(tar_runs) == 1
    assert not tar_children()


def test_a_download_refused_after_the_walk_leaves_no_tar_running(
    anonymous, awkward_files, settings, tar_runs
):
    settings.DPD_TAR_PROCESS_MIN_FILES = 1
    settings.DPD_QUERY_DOWNLOAD_MAX_BYTES = 10_000
    everything = {"start_date": "1900-01-01", "end_date": "2100-01-01"}
    response = anonymous.post("/download", everything, format="json")
    assert response.status_code == 413
    assert len(tar_runs) == 1  # the walk had found enough small files
    assert not tar_children()


def test_an_archive_that_ends_with_large_files_goes_from_python_after_all(
    anonymous, awkward_files, settings, tar_runs
):
    """tar starts on the first files; when the whole archive turns out to
    average over 1 MiB a file, it is stopped and Python sends every byte."""
    settings.DPD_TAR_PROCESS_MIN_FILES = 1
    (awkward_files / "zz-large").write_bytes(os.urandom(64 * 1024 * 1024 // 16) * 16)
    response = anonymous.post("/download", BODY, format="json")
    assert len(tar_runs) == 1
    assert not tar_children()  # stopped before the first byte, not after the last
    data = b"".join(response.streaming_content)
    settings.DPD_TAR_PROCESS_MIN_FILES = 0
    same, python_bytes = fetch(anonymous)
    assert same["ETag"] == response["ETag"] and data == python_bytes
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        assert archive.getmember(f"{VR}/zz-large").size == 64 * 1024 * 1024
