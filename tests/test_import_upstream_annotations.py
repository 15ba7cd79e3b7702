"""`manage.py import_upstream_annotations`: a site's annotations come over
from the SKA DPD API's own table, created here with the upstream's DDL
(reference 5.5: `uid CHAR(64)`, space-padded; timestamps without a time
zone), exactly once however often the import runs."""

from __future__ import annotations

import datetime as dt
import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from rest_framework.test import APIClient

from annotations.models import Annotation
from dpd.metadata import product_uid
from tests.annotation_helpers import make_product, make_user
from tests.service_processes import database_url

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the upstream's table is PostgreSQL's"
)

# The upstream's CREATE TABLE (reference 5.5), word for word but for the name.
UPSTREAM_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    id SERIAL PRIMARY KEY,
    uid CHAR(64),
    annotation_text TEXT,
    user_principal_name VARCHAR(255),
    timestamp_created TIMESTAMP,
    timestamp_modified TIMESTAMP
)
"""
NOON = dt.datetime(2024, 11, 13, 12, 0, 0, 412233)
LATER = dt.datetime(2024, 11, 14, 9, 30)
NOT_YET_INDEXED = "eb-m009-20241113-900"


def upstream_table(table: str = "data_products_annotations_v1") -> str:
    with connection.cursor() as cursor:
        cursor.execute(UPSTREAM_DDL.format(table=table))
    return table


def upstream_add(uid, text, author, created=NOON, modified=None, table=None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table or 'data_products_annotations_v1'} (uid, annotation_text, "
            "user_principal_name, timestamp_created, timestamp_modified) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING id",
            [str(uid), text, author, created, modified or created],
        )
        return cursor.fetchone()[0]


def upstream_edit(row_id: int, text: str, modified: dt.datetime) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE data_products_annotations_v1 SET annotation_text = %s, "
            "timestamp_modified = %s WHERE id = %s",
            [text, modified, row_id],
        )


def run_import(*args: str) -> list[str]:
    out = StringIO()
    call_command("import_upstream_annotations", *args, stdout=out)
    return out.getvalue().splitlines()


def missing_uid():
    """The uid of a product the volume has but the catalogue does not yet."""
    return product_uid(NOT_YET_INDEXED, f"/volume/{NOT_YET_INDEXED}-public")


@pytest.fixture
def site(db):
    """The upstream's table with a site's notes: two on one product, one on
    another, one on a product not indexed yet, one whose uid is garbage."""
    upstream_table()
    first, second = make_product(), make_product("eb-m002-20230922-246")
    rows = {
        "rfi": upstream_add(first.uid, "RFI visible in scan 3.", "first.last@skao.int"),
        "reply": upstream_add(first.uid, "Flagged; fine now.", "other.person@skao.int", LATER),
        "second": upstream_add(second.uid, "Calibrator off.", "first.last@skao.int"),
        "waiting": upstream_add(missing_uid(), "Waiting for it.", "third@skao.int"),
        "garbage": upstream_add("not-a-uid", "Lost cause.", "first.last@skao.int"),
    }
    return first, second, rows


def test_every_upstream_annotation_comes_over_once_with_its_author_text_and_times(site):
    first, _, rows = site

    lines = run_import()

    assert lines[-1] == (
        "upstream_rows=5 created=4 updated=0 unchanged=0 deleted_here=0 conflicts=0 "
        "refused=1 unattached=1"
    )
    assert f"upstream row {rows['garbage']}: its uid 'not-a-uid' is not a UUID" in "\n".join(lines)
    rfi = Annotation.objects.get(annotation_text="RFI visible in scan 3.")
    assert rfi.data_product_uid == first.uid
    assert rfi.user_principal_name == rfi.modified_by == "first.last@skao.int"
    # Its author signed in with the dashboard's token: the same identity edits it here.
    assert (rfi.author_method, rfi.author_subject) == ("dashboard", "first.last@skao.int")
    assert rfi.timestamp_created == rfi.timestamp_modified == NOON.replace(tzinfo=dt.UTC)
    assert rfi.upstream.upstream_id == rows["rfi"]

    listed = APIClient()
    listed.force_login(make_user("reader"))
    body = listed.get(f"/annotations/{first.uid}").json()
    assert [(row["annotation_text"], row["user_principal_name"]) for row in body] == [
        ("RFI visible in scan 3.", "first.last@skao.int"),
        ("Flagged; fine now.", "other.person@skao.int"),
    ]
    # The upstream's own strings: naive UTC, and the uid without its padding.
    assert body[0]["timestamp_created"] == "2024-11-13T12:00:00.412233"
    assert body[0]["data_product_uid"] == str(first.uid)


def test_a_second_run_adds_nothing(site):
    run_import()
    before = list(Annotation.objects.values_list("pk", "annotation_text", "timestamp_modified"))

    lines = run_import()

    assert lines[-1].startswith("upstream_rows=5 created=0 updated=0 unchanged=4 ")
    after = list(Annotation.objects.values_list("pk", "annotation_text", "timestamp_modified"))
    assert after == before and len(after) == 4


def test_an_annotation_on_a_product_not_indexed_yet_is_kept_and_shows_once_it_is(site):
    _, _, rows = site
    reader = APIClient()
    reader.force_login(make_user("reader"))

    lines = run_import()

    waiting = Annotation.objects.get(annotation_text="Waiting for it.")
    assert (
        f"no product yet: annotation {waiting.pk} (upstream row {rows['waiting']}) on "
        f"{missing_uid()}"
    ) in "\n".join(lines)
    assert reader.get(f"/annotations/{missing_uid()}").status_code == 204
    make_product(NOT_YET_INDEXED)  # the indexer finds it
    assert reader.get(f"/annotations/{missing_uid()}").json()[0]["annotation_id"] == waiting.pk
    assert run_import()[-1].endswith(" unattached=0")


def test_a_later_run_brings_upstream_edits_but_keeps_edits_and_deletions_made_here(site):
    _, _, rows = site
    run_import()
    upstream_edit(rows["rfi"], "RFI in scans 3 and 4.", LATER)
    upstream_edit(rows["second"], "Calibrator off, reobserved.", LATER)
    upstream_edit(rows["reply"], "Flagged; fine now!", LATER + dt.timedelta(hours=1))
    edited_here = Annotation.objects.get(annotation_text="Calibrator off.")
    edited_here.annotation_text = "Calibrator off (curated here)."
    edited_here.timestamp_modified = LATER.replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
    edited_here.save()
    Annotation.objects.get(annotation_text="Flagged; fine now.").delete()

    lines = run_import()

    assert lines[-1].startswith(
        "upstream_rows=5 created=0 updated=1 unchanged=1 deleted_here=1 conflicts=1 "
    )
    assert f"not updated: upstream row {rows['second']}" in "\n".join(lines)
    rfi = Annotation.objects.get(upstream__upstream_id=rows["rfi"])
    assert rfi.annotation_text == "RFI in scans 3 and 4."
    assert rfi.timestamp_modified == LATER.replace(tzinfo=dt.UTC)
    assert rfi.timestamp_created == NOON.replace(tzinfo=dt.UTC)
    assert [r.annotation_text for r in rfi.revisions.all()] == ["RFI visible in scan 3."]
    assert Annotation.objects.get(pk=edited_here.pk).annotation_text == (
        "Calibrator off (curated here)."
    )
    assert not Annotation.objects.filter(annotation_text__startswith="Flagged").exists()


def test_a_dry_run_reports_and_changes_nothing(site):
    lines = run_import("--dry-run")

    assert lines[-1].startswith("dry run, nothing changed: upstream_rows=5 created=4 ")
    assert not Annotation.objects.exists()


def test_naive_times_can_be_read_in_another_zone(site):
    run_import("--time-zone", "Europe/Amsterdam")

    rfi = Annotation.objects.get(annotation_text="RFI visible in scan 3.")
    assert rfi.timestamp_created == NOON.replace(tzinfo=dt.UTC) - dt.timedelta(hours=1)


def test_another_database_and_the_table_name_from_the_upstream_variable(transactional_db, settings):
    settings.SKA_DATAPRODUCT_API_POSTGRESQL_SCHEMA = "upstream"
    settings.SKA_DATAPRODUCT_API_POSTGRESQL_ANNOTATIONS_TABLE_NAME = "site_notes"
    with connection.cursor() as cursor:
        cursor.execute("CREATE SCHEMA upstream")
    table = upstream_table("upstream.site_notes")
    product = make_product()
    row = upstream_add(product.uid, "From elsewhere.", "first.last@skao.int", table=table)
    try:
        lines = run_import("--database-url", database_url(connection.settings_dict))
        again = run_import("--database-url", database_url(connection.settings_dict))
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP SCHEMA upstream CASCADE")

    assert " created=1 " in lines[-1] and " unchanged=1 " in again[-1]
    note = Annotation.objects.get()
    assert (note.annotation_text, note.upstream.source) == (
        "From elsewhere.",
        "upstream.site_notes",
    )
    assert note.upstream.upstream_id == row


def test_a_missing_table_is_a_clear_error_naming_the_settings(db):
    with pytest.raises(CommandError) as refused:
        run_import("--table", "no_such_table")

    message = str(refused.value)
    assert "public.no_such_table" in message and "does not exist" in message
    assert "SKA_DATAPRODUCT_API_POSTGRESQL_ANNOTATIONS_TABLE_NAME" in message
    assert not Annotation.objects.exists()


def test_a_bad_time_zone_is_refused_before_anything_is_read(site):
    with pytest.raises(CommandError, match="not a time zone"):
        run_import("--time-zone", "Mars/Olympus")
    assert not Annotation.objects.exists()


def test_uids_are_matched_whatever_their_case_and_padding(db):
    upstream_table()
    product = make_product()
    upstream_add(str(product.uid).upper() + "   ", "Shouted.", "first.last@skao.int")

    run_import()

    assert Annotation.objects.get().data_product_uid == uuid.UUID(str(product.uid))
