"""The volume indexer: fixtures, bad input, incremental runs, timeouts (issue 3)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

from dpd.metadata import hashed_folder, product_uid
from dpd.models import DataProduct
from dpd.sample_volume import build_sample_volume
from dpd.search_text import field_value, field_values
from indexing import indexer
from indexing.indexer import VolumeUnavailable, index_volume
from tests.catalogue_indexes import SEARCH_INDEXES, search_indexes, sort_keys_analyzed
from tests.conftest import UPSTREAM_ROOT
from tests.file_access import as_a_user_without_root_file_access
from tests.test_metadata import EXPECTED, REJECTED

pytestmark = pytest.mark.django_db

META = "ska-data-product.yaml"
GOOD = "interface: http://schema.skao.int/ska-data-product-meta/0.1\nexecution_block: {eb}\n"


def write_product(root: Path, folder: str, text: str | bytes) -> Path:
    path = root / folder / META
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def errors_of(result) -> dict[str, str]:
    return dict(result.errors)


def test_it_indexes_every_fixture_with_the_reference_uids(tmp_path, settings):
    # Section 7's uids hash the upstream tests' configured root, a relative path.
    settings.BASE_DIR = tmp_path
    build_sample_volume(tmp_path / UPSTREAM_ROOT)

    result = index_volume(UPSTREAM_ROOT)

    assert (result.files_found, result.files_added, len(result.errors)) == (18, 15, 3)
    stored = {p.dataproduct_file: p for p in DataProduct.objects.all()}
    assert set(stored) == set(EXPECTED)
    for folder, (eb, date, group, uid) in EXPECTED.items():
        product = stored[folder]
        assert str(product.uid) == uid
        assert product.execution_block == (eb or folder)
        assert product.date_created.isoformat() == date
        assert product.access_group == group
        assert product.metadata_file == f"{folder}/{META}"
        assert product.source == DataProduct.Source.VOLUME


def test_the_three_rejected_fixtures_are_reported_with_their_paths(sample_volume):
    result = index_volume()

    assert errors_of(result) == {f"{folder}/{META}": why for folder, why in REJECTED.items()}
    assert result.step == "completed" and not result.timed_out and result.walk_complete


def test_sub_products_are_separate_products_sharing_their_execution_block(sample_volume):
    index_volume()

    subs = DataProduct.objects.filter(execution_block="eb-notebook-20240201-54576")
    assert sorted(p.dataproduct_file for p in subs) == [
        "eb-notebook-20240201-54576/ska-sdp/pb-notebookpo-20240201-54576",
        "eb-notebook-20240201-54576/ska-sdp/pb-notebookvr-20240201-54576",
    ]
    assert len({p.uid for p in subs}) == 2


def test_uids_hash_the_configured_root_and_stay_stable_across_runs(sample_volume):
    index_volume()
    first = dict(DataProduct.objects.values_list("metadata_file", "uid"))
    DataProduct.objects.all().delete()
    index_volume()

    assert dict(DataProduct.objects.values_list("metadata_file", "uid")) == first
    product = DataProduct.objects.get(dataproduct_file="eb-m005-20231031-12345")
    folder = hashed_folder(str(sample_volume), "eb-m005-20231031-12345")
    assert product.uid == product_uid("eb-m005-20231031-12345", folder)


def test_worker_processes_give_the_same_catalogue_as_one_process(sample_volume, monkeypatch):
    index_volume(workers=1)
    inline = {p.metadata_file: (p.uid, p.metadata) for p in DataProduct.objects.all()}
    DataProduct.objects.all().delete()
    # Small chunks, so that this small volume is walked and parsed by the pool.
    monkeypatch.setattr(indexer, "PARSE_CHUNK", 2)
    monkeypatch.setattr(indexer, "PARALLEL_WALK_MIN_FOLDERS", 1)
    monkeypatch.setattr(indexer, "WALK_CHUNK_MIN", 1)

    cold = index_volume(workers=2, batch_size=4)
    assert {p.metadata_file: (p.uid, p.metadata) for p in DataProduct.objects.all()} == inline
    assert (cold.files_found, cold.files_added, len(cold.errors)) == (18, 15, 3)

    shutil.rmtree(sample_volume / "eb-m005-20231031-12345")
    again = index_volume(workers=2, batch_size=4)
    assert (again.files_skipped, again.files_removed, again.files_added) == (14, 1, 0)


def test_a_missing_volume_is_unavailable(tmp_path):
    with pytest.raises(VolumeUnavailable, match="does not exist"):
        index_volume(str(tmp_path / "absent"))


# --- bad input: each one reported with its path; the run goes on -------------------

BAD_DOCUMENTS = {
    "yaml-syntax": ("execution_block: [unclosed\n", "YAML syntax error at line"),
    "not-a-mapping": ("- just\n- a list\n", "not a mapping"),
    "no-execution-block": ("interface: x\nfiles: []\n", "missing execution_block"),
    "files-not-a-list": ("execution_block: eb-x-20240101-1\nfiles: {a: 1}\n", "files must be"),
    "alias-bomb": (
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        )
        + "execution_block: eb-bomb-20240101-1\n",
        "alias bomb",
    ),
    "over-one-mebibyte": (
        "execution_block: eb-big-20240101-1\nnotes: '" + "x" * (1024 * 1024) + "'\n",
        "over the 1048576-byte limit",
    ),
    "not-utf8": (b"execution_block: eb-latin-20240101-1\nnote: caf\xe9\n", "not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(BAD_DOCUMENTS))
def test_a_bad_document_is_reported_and_the_rest_is_indexed(tmp_path, case):
    text, reason = BAD_DOCUMENTS[case]
    write_product(tmp_path, "eb-good-20240101-1", GOOD.format(eb="eb-good-20240101-1"))
    write_product(tmp_path, case, text)

    result = index_volume(str(tmp_path))

    assert reason in errors_of(result)[f"{case}/{META}"]
    assert list(DataProduct.objects.values_list("execution_block", flat=True)) == [
        "eb-good-20240101-1"
    ]
    assert result.step == "completed"


def test_a_metadata_file_that_is_a_fifo_is_reported_without_blocking(tmp_path):
    # Tests run as root, for whom chmod 000 hides nothing: a FIFO, a folder and
    # a broken symlink are unreadable metadata "files" for every user.
    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo" / META)
    (tmp_path / "folder" / META).mkdir(parents=True)
    (tmp_path / "dangling").mkdir()
    (tmp_path / "dangling" / META).symlink_to(tmp_path / "nowhere.yaml")
    write_product(tmp_path, "eb-good-20240101-1", GOOD.format(eb="eb-good-20240101-1"))

    result = index_volume(str(tmp_path))

    errors = errors_of(result)
    assert errors[f"fifo/{META}"] == "not a regular file (a FIFO)"
    assert errors[f"folder/{META}"] == "is a folder, not a metadata file"
    assert errors[f"dangling/{META}"] == "broken symlink"
    assert DataProduct.objects.count() == 1


def test_an_unreadable_file_is_reported_and_the_rest_is_indexed(tmp_path):
    write_product(tmp_path, "eb-good-20240101-1", GOOD.format(eb="eb-good-20240101-1"))
    write_product(tmp_path, "secret", GOOD.format(eb="eb-secret-20240101-1")).chmod(0)

    with as_a_user_without_root_file_access():
        result = index_volume(str(tmp_path))

    assert errors_of(result) == {f"secret/{META}": "cannot read: Permission denied"}
    assert list(DataProduct.objects.values_list("execution_block", flat=True)) == [
        "eb-good-20240101-1"
    ]
    assert result.step == "completed"


def test_a_symlinked_metadata_file_pointing_outside_the_volume_is_refused(tmp_path):
    root = tmp_path / "volume"
    outside = write_product(tmp_path, "elsewhere", GOOD.format(eb="eb-out-20240101-1"))
    (root / "escape").mkdir(parents=True)
    (root / "escape" / META).symlink_to(outside)
    inside = write_product(root, "real", GOOD.format(eb="eb-in-20240101-1"))
    (root / "alias").mkdir()
    (root / "alias" / META).symlink_to(inside)

    result = index_volume(str(root))

    assert errors_of(result) == {f"escape/{META}": "symlink points outside the volume"}
    assert sorted(DataProduct.objects.values_list("dataproduct_file", flat=True)) == [
        "alias",
        "real",
    ]


def test_a_directory_loop_is_reported_and_not_followed(tmp_path):
    write_product(tmp_path, "eb-a-20240101-1/ska-sdp/pb-1", GOOD.format(eb="eb-a-20240101-1"))
    (tmp_path / "eb-a-20240101-1" / "ska-sdp" / "pb-1" / "up").symlink_to(tmp_path)

    result = index_volume(str(tmp_path), work_unit_depth=1)

    assert errors_of(result) == {
        "eb-a-20240101-1/ska-sdp/pb-1/up": "directory loop: symlink to an ancestor folder, "
        "not followed"
    }
    assert DataProduct.objects.count() == 1 and result.step == "completed"


TURNS_BAD = {
    **{case: reason for case, (_, reason) in BAD_DOCUMENTS.items()},
    "a-fifo": "not a regular file (a FIFO)",
    "a-folder": "is a folder, not a metadata file",
    "a-broken-symlink": "broken symlink",
    "a-symlink-outside": "symlink points outside the volume",
    "unreadable": "cannot read: Permission denied",
}


def spoil(path: Path, case: str) -> None:
    """Turn the valid metadata file at `path` into the bad input `case`."""
    if case in BAD_DOCUMENTS:
        text = BAD_DOCUMENTS[case][0]
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return
    if case == "unreadable":  # changed, so the run must read it
        path.write_text(path.read_text() + "\nextra: 1\n")
        path.chmod(0)
        return
    path.unlink()
    if case == "a-fifo":
        os.mkfifo(path)
    elif case == "a-folder":
        path.mkdir()
    elif case == "a-broken-symlink":
        path.symlink_to(path.parent / "gone.yaml")
    elif case == "a-symlink-outside":
        outside = path.parents[2] / "elsewhere"
        path.symlink_to(write_product(outside, "eb", GOOD.format(eb="eb-o-20240101-1")))


@pytest.mark.parametrize("case", sorted(TURNS_BAD))
def test_a_file_that_turns_bad_keeps_its_last_good_version(sample_volume, case):
    index_volume()
    folder = "eb-m005-20231031-12345"
    before = DataProduct.objects.get(dataproduct_file=folder)
    spoil(sample_volume / folder / META, case)

    with as_a_user_without_root_file_access():
        result = index_volume()

    assert TURNS_BAD[case] in errors_of(result)[f"{folder}/{META}"]
    after = DataProduct.objects.get(dataproduct_file=folder)
    assert (after.uid, after.metadata) == (before.uid, before.metadata)
    assert result.files_removed == 0 and DataProduct.objects.count() == 15
    assert result.step == "completed"


# --- incremental runs ---------------------------------------------------------------


def test_an_unchanged_volume_is_skipped_without_reading_a_file(sample_volume):
    index_volume()
    # Same size, same mtime, different bytes: only a run that reads would notice.
    for path in sample_volume.rglob(META):
        info = path.stat()
        path.write_bytes(b"!" * info.st_size)
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    before = dict(DataProduct.objects.values_list("uid", "metadata"))

    result = index_volume()

    assert (result.files_skipped, result.files_added, result.files_updated) == (15, 0, 0)
    assert dict(DataProduct.objects.values_list("uid", "metadata")) == before


def test_a_new_folder_is_added_and_the_rest_skipped(sample_volume):
    index_volume()
    write_product(sample_volume, "eb-new-20250102-1", GOOD.format(eb="eb-new-20250102-1"))

    result = index_volume()

    assert (result.files_added, result.files_updated, result.files_skipped) == (1, 0, 15)
    assert DataProduct.objects.get(execution_block="eb-new-20250102-1").date_created.year == 2025


def test_a_modified_file_updates_its_product_in_place(sample_volume):
    index_volume()
    folder = "eb-m005-20231031-12345"
    before = DataProduct.objects.get(dataproduct_file=folder)
    path = sample_volume / folder / META
    path.write_text(path.read_text() + "\nextra: added later\n")

    result = index_volume()

    assert (result.files_updated, result.files_added, result.files_skipped) == (1, 0, 14)
    after = DataProduct.objects.get(dataproduct_file=folder)
    assert (after.pk, after.uid) == (before.pk, before.uid)
    assert after.metadata["extra"] == "added later"
    assert after.file_size == path.stat().st_size


def test_a_deleted_folder_removes_its_product_after_the_walk(sample_volume):
    index_volume()
    shutil.rmtree(sample_volume / "eb-m005-20231031-12345")

    result = index_volume()

    assert result.files_removed == 1
    assert not DataProduct.objects.filter(execution_block="eb-m005-20231031-12345").exists()


def test_a_renamed_folder_moves_the_product_to_a_new_uid(sample_volume):
    index_volume()
    old = DataProduct.objects.get(dataproduct_file="eb-m005-20231031-12345")
    (sample_volume / "eb-m005-20231031-12345").rename(sample_volume / "renamed")

    result = index_volume()

    assert (result.files_removed, result.files_added) == (1, 1)
    new = DataProduct.objects.get(dataproduct_file="renamed")
    assert new.uid == product_uid(
        "eb-m005-20231031-12345", hashed_folder(str(sample_volume), "renamed")
    )
    assert not DataProduct.objects.filter(uid=old.uid).exists()


def test_a_uid_moving_to_another_file_carries_the_product_over(sample_volume):
    # Pointing the configured root one level up keeps every hashed folder
    # string (so every uid) but changes every relative path.
    index_volume()
    uids = set(DataProduct.objects.values_list("uid", flat=True))

    result = index_volume(str(sample_volume.parent), work_unit_depth=2)

    assert set(DataProduct.objects.values_list("uid", flat=True)) == uids
    assert (result.files_updated, result.files_added, result.files_removed) == (15, 0, 0)
    assert DataProduct.objects.filter(metadata_file__startswith="volume/").count() == 15


def test_a_deadline_that_passed_stops_the_run_and_removes_nothing(sample_volume):
    index_volume()
    shutil.rmtree(sample_volume / "eb-m005-20231031-12345")

    result = index_volume(deadline=time.monotonic() - 1)

    assert result.timed_out and result.step == "timeout_partial_completion"
    assert not result.walk_complete and result.files_removed == 0
    assert DataProduct.objects.count() == 15


def test_an_exception_from_on_progress_aborts_the_run_and_removes_nothing(sample_volume):
    index_volume()
    shutil.rmtree(sample_volume / "eb-m005-20231031-12345")
    write_product(sample_volume, "eb-new-20250102-1", GOOD.format(eb="eb-new-20250102-1"))

    def lose_leadership(progress):
        raise RuntimeError("lost the lease")

    with pytest.raises(RuntimeError, match="lost the lease"):
        index_volume(on_progress=lose_leadership)

    assert DataProduct.objects.filter(execution_block="eb-m005-20231031-12345").exists()


def test_progress_is_reported_after_every_written_batch(sample_volume):
    seen = []

    index_volume(batch_size=4, on_progress=lambda p: seen.append((p.step, p.files_added)))

    added = [count for _, count in seen]
    assert added == sorted(added) and added[-1] == 15
    assert len(seen) >= 15 // 4
    assert seen[-1][0] == "completed"
    assert any(step.startswith("ingesting_remaining") for step, _ in seen)


# --- PostgreSQL: the search indexes around a bulk load ---------------------------------

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the GIN indexes exist on PostgreSQL only"
)


@postgresql_only
def test_a_first_index_builds_the_search_indexes_after_loading_an_empty_catalogue(
    sample_volume,
):
    during = []

    index_volume(
        batch_size=4,
        on_progress=lambda progress: during.append(search_indexes()),
        bulk_load=True,
    )

    assert during[0] == set()  # dropped for the load
    assert search_indexes() == SEARCH_INDEXES
    assert DataProduct.objects.filter(search_text__contains="AIV_person_1").exists()


def observers_found(name: str) -> int:
    """Products a grid filter `context.observer equals <name>` finds."""
    return observers_found_in("context.observer", name)


def observers_found_in(field: str, value: str) -> int:
    """Products a grid filter `<field> equals <value>` finds, as the API asks."""
    wanted = [field_value(field, value)]
    return DataProduct.objects.filter(field_values__has_any=wanted).count()


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_first_index_run_as_the_command_runs_it_builds_every_search_index(sample_volume):
    # Outside any transaction, as `manage.py reindex` runs: the indexes are
    # built side by side on two connections.
    assert sort_keys_analyzed() == set()  # as migration 0015 built them
    index_volume(batch_size=4, bulk_load=True)

    assert search_indexes() == SEARCH_INDEXES
    assert sort_keys_analyzed() == set()  # and as the writer built them again
    assert DataProduct.objects.filter(search_text__contains="AIV_person_1").exists()
    assert observers_found("aiv_person_1") == 5


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_indexes_the_second_connection_cannot_build_are_built_by_the_first(
    sample_volume, monkeypatch, caplog
):
    from indexing import writer

    monkeypatch.setattr(writer, "APART_LOCK_TIMEOUT", "no duration")  # its SET fails

    index_volume(batch_size=4, bulk_load=True)

    assert search_indexes() == SEARCH_INDEXES
    assert "Load indexes left to the run's connection" in caplog.text
    assert observers_found("AIV_person_1") == 5


def planner_rows() -> float:
    """The catalogue's size as the planner knows it (pg_class.reltuples, set by ANALYZE)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = 'dpd_dataproduct'")
        return cursor.fetchone()[0]


@postgresql_only
def test_a_first_index_leaves_the_planner_knowing_the_catalogue(sample_volume):
    index_volume(batch_size=4, bulk_load=True)
    assert planner_rows() == 15


@postgresql_only
def test_the_planner_follows_a_catalogue_growing_during_a_background_run(
    sample_volume, monkeypatch
):
    from indexing import writer

    monkeypatch.setattr(writer, "ANALYZE_MIN_ROWS", 4)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE dpd_dataproduct")  # empty; ANALYZE outlives rollbacks
    assert planner_rows() == 0
    during = []
    index_volume(batch_size=4, on_progress=lambda progress: during.append(planner_rows()))
    # Analyzed at 4 rows (the minimum), then each time the table grew by half.
    assert 4 in during and 8 in during
    assert planner_rows() == 12  # 15 is not half as many again as 12


@postgresql_only
def test_a_first_index_that_fails_still_leaves_the_search_indexes(sample_volume):
    def lose_leadership(progress):
        raise RuntimeError("lost the lease")

    with pytest.raises(RuntimeError, match="lost the lease"):
        index_volume(batch_size=4, on_progress=lose_leadership, bulk_load=True)

    assert search_indexes() == SEARCH_INDEXES


@postgresql_only
def test_a_run_restores_search_indexes_that_a_killed_run_left_dropped(sample_volume):
    index_volume()
    with connection.schema_editor() as editor:
        for index in DataProduct._meta.indexes:
            if index.name in SEARCH_INDEXES:
                editor.remove_index(DataProduct, index)

    result = index_volume()

    assert search_indexes() == SEARCH_INDEXES
    assert result.files_skipped == 15 and DataProduct.objects.count() == 15


@postgresql_only
def test_a_background_first_index_keeps_the_search_indexes_throughout(sample_volume):
    # Searches run during background loads; without the trigram index each
    # key:value search would read every row.
    during = []

    index_volume(batch_size=4, on_progress=lambda progress: during.append(search_indexes()))

    assert during and all(present == SEARCH_INDEXES for present in during)
    assert DataProduct.objects.count() == 15


@postgresql_only
def test_a_run_into_a_filled_catalogue_keeps_its_search_indexes_throughout(sample_volume):
    index_volume()
    write_product(sample_volume, "eb-new-20250102-1", GOOD.format(eb="eb-new-20250102-1"))
    during = []

    result = index_volume(on_progress=lambda progress: during.append(search_indexes()))

    assert result.files_added == 1
    assert all(present == SEARCH_INDEXES for present in during)


@postgresql_only
def test_a_second_run_during_a_first_load_leaves_the_search_indexes(sample_volume):
    # A leader taking over from one it wrongly thought dead: the run that
    # starts while the first load has the indexes dropped builds them, and the
    # first load then finds nothing to build.
    second = []

    def start_a_second_run(progress):
        if not second and progress.files_added:
            second.append(index_volume())

    first = index_volume(batch_size=4, on_progress=start_a_second_run, bulk_load=True)

    assert search_indexes() == SEARCH_INDEXES
    assert first.step == second[0].step == "completed"
    assert DataProduct.objects.count() == 15


def test_values_that_mean_something_to_copy_are_stored_as_written(tmp_path):
    # COPY's text format gives tabs, newlines, backslashes and \N a meaning.
    folder = "eb-odd-20240101-1/tab\there \\N back\\slash 'quoted' ünïcødé"
    hostile = "line one\nline\ttwo \\N \\. back\\slash \"double\" 'single' \u2028 ünïcødé"
    text = f"execution_block: eb-odd-20240101-1\ncontext:\n  notes: {json.dumps(hostile)}\n"
    write_product(tmp_path, folder, text)

    result = index_volume(str(tmp_path), work_unit_depth=1)

    assert result.errors == [] and result.files_added == 1
    product = DataProduct.objects.get()
    assert product.dataproduct_file == folder
    assert product.metadata["context"]["notes"] == hostile
    assert DataProduct.objects.filter(search_text__contains="back\\slash").exists()
    # The grid's equality filters read the same values (an array literal on PostgreSQL).
    assert product.field_values == field_values(product.search_text)
    assert observers_found_in("context.notes", hostile.upper()) == 1


@postgresql_only
def test_an_index_whose_migration_has_not_run_is_left_to_migrate(sample_volume):
    # New code started before `migrate`: the indexer must not create the index
    # the pending migration adds (the migration would then fail).
    index_volume()
    recorder = MigrationRecorder(connection)
    # 0009 adds the index; any later migrations are pending too.
    for app, name in recorder.applied_migrations():
        if app == "dpd" and name >= "0009":
            recorder.record_unapplied(app, name)
    with connection.schema_editor() as editor:
        for index in DataProduct._meta.indexes:
            if index.name == "dpd_eb_folded_trgm":
                editor.remove_index(DataProduct, index)

    index_volume()

    assert search_indexes() == SEARCH_INDEXES - {"dpd_eb_folded_trgm"}
    DataProduct.objects.all().delete()
    index_volume(bulk_load=True)  # a first load builds only what it dropped
    assert search_indexes() == SEARCH_INDEXES - {"dpd_eb_folded_trgm"}
