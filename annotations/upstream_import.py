"""Bringing a site's annotations over from the SKA DPD API it replaces.

The upstream keeps them in a table of its own (reference 5.5): `id SERIAL`,
`uid CHAR(64)` (the product uid, space-padded by the column type),
`annotation_text`, `user_principal_name`, and `timestamp_created` /
`timestamp_modified` as TIMESTAMP without time zone (UTC on the upstream's
pods). Each upstream row becomes one Annotation with the same author, text
and times, and an UpstreamAnnotation remembering the row, so that running
the import again (a rehearsal, then the switch-over) never adds a row twice:

- a row seen before and unchanged upstream is left alone;
- a row edited upstream since is updated here, its old text kept as a
  revision, unless someone edited it here too (then it is reported, and
  ours is kept);
- a row whose annotation was deleted here is not brought back.

Annotations point at products by uid, so one whose product is not in the
catalogue yet is kept and shows on the product once it is indexed; the
report lists them for the operator. A row that cannot be stored (its uid is
not a UUID) is reported with its id, never dropped silently.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from annotations.models import LEGACY, Annotation, AnnotationRevision, UpstreamAnnotation
from dpd.access import SignIn
from dpd.models import DataProduct

COLUMNS = "id, uid, annotation_text, user_principal_name, timestamp_created, timestamp_modified"


def quoted_table(schema: str, table: str) -> str:
    """`"schema"."table"` for PostgreSQL, whatever the names contain."""
    return ".".join('"' + name.replace('"', '""') + '"' for name in (schema, table))


def upstream_rows_query(schema: str, table: str) -> str:
    return f"SELECT {COLUMNS} FROM {quoted_table(schema, table)} ORDER BY id"


@dataclass
class UpstreamRow:
    id: int
    uid: str | None
    annotation_text: str | None
    user_principal_name: str | None
    timestamp_created: dt.datetime | None
    timestamp_modified: dt.datetime | None


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted_here: int = 0
    # (upstream id, why) for rows not brought over, or not updated.
    refused: list[tuple[int, str]] = field(default_factory=list)
    conflicts: list[tuple[int, str]] = field(default_factory=list)
    # (annotation id, upstream id, product uid) of annotations on products
    # not in the catalogue (yet).
    unattached: list[tuple[int, int, uuid.UUID]] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"upstream_rows={self.rows} created={self.created} updated={self.updated} "
            f"unchanged={self.unchanged} deleted_here={self.deleted_here} "
            f"conflicts={len(self.conflicts)} refused={len(self.refused)} "
            f"unattached={len(self.unattached)}"
        )


def _aware(value: dt.datetime | None, zone: dt.tzinfo) -> dt.datetime | None:
    if value is None or timezone.is_aware(value):
        return value
    return value.replace(tzinfo=zone)


def _uid(raw: str | None) -> uuid.UUID:
    text = (raw or "").strip()
    if not text:
        raise ValueError("it has no uid")
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ValueError(f"its uid {text[:80]!r} is not a UUID") from None


def upstream_annotations_import(
    rows: Iterable[tuple[Any, ...]],
    *,
    source: str,
    zone: dt.tzinfo = dt.UTC,
    dry_run: bool = False,
) -> ImportReport:
    """Bring the upstream `rows` (tuples in COLUMNS order) over, in one
    transaction: all of them or, on an error, none. `zone` is the time zone
    of the upstream's naive timestamps."""
    report = ImportReport()
    with transaction.atomic():
        known = {
            record.upstream_id: record
            for record in UpstreamAnnotation.objects.filter(source=source).select_related(
                "annotation"
            )
        }
        imported: list[tuple[Annotation, int]] = []
        for values in rows:
            row = UpstreamRow(*values)
            report.rows += 1
            try:
                annotation = _import_row(row, known.get(row.id), source, zone, report)
            except ValueError as exc:
                report.refused.append((row.id, str(exc)))
                continue
            if annotation is not None:
                imported.append((annotation, row.id))
        _find_unattached(imported, report)
        if dry_run:
            transaction.set_rollback(True)
    return report


def _import_row(
    row: UpstreamRow,
    record: UpstreamAnnotation | None,
    source: str,
    zone: dt.tzinfo,
    report: ImportReport,
) -> Annotation | None:
    uid = _uid(row.uid)
    modified = _aware(row.timestamp_modified, zone)
    created = _aware(row.timestamp_created, zone) or modified or timezone.now()
    modified = modified or created
    text = row.annotation_text or ""
    author = row.user_principal_name or ""
    if record is None:
        annotation = Annotation.objects.create(
            data_product_uid=uid,
            annotation_text=text,
            user_principal_name=author,
            # The upstream's authors signed in with the dashboard's token, whose
            # subject is this same principal name: they keep their edit rights
            # that way, and nobody else gets them by taking the name.
            author_method=SignIn.DASHBOARD if author else LEGACY,
            author_subject=author,
            modified_by=author,
            timestamp_created=created,
            timestamp_modified=modified,
        )
        UpstreamAnnotation.objects.create(
            source=source, upstream_id=row.id, annotation=annotation, upstream_modified=modified
        )
        report.created += 1
        return annotation
    annotation = record.annotation
    if annotation is None:
        report.deleted_here += 1
        return None
    if modified == record.upstream_modified:
        report.unchanged += 1
        return annotation
    if annotation.timestamp_modified != record.upstream_modified:
        report.conflicts.append(
            (
                row.id,
                f"edited upstream and here (annotation {annotation.annotation_id}): "
                "kept the text written here",
            )
        )
        return annotation
    if text != annotation.annotation_text:
        AnnotationRevision.objects.create(
            annotation=annotation,
            annotation_text=annotation.annotation_text,
            written_by=annotation.last_editor,
            written_at=annotation.timestamp_modified,
            # The upstream records no editor; only the author edits there.
            edited_by=author,
            edited_at=modified,
        )
        annotation.annotation_text = text
    annotation.timestamp_modified = modified
    annotation.save(update_fields=["annotation_text", "timestamp_modified"])
    record.upstream_modified = modified
    record.save(update_fields=["upstream_modified"])
    report.updated += 1
    return annotation


def _find_unattached(imported: list[tuple[Annotation, int]], report: ImportReport) -> None:
    uids = {annotation.data_product_uid for annotation, _ in imported}
    catalogued = set(DataProduct.objects.filter(uid__in=uids).values_list("uid", flat=True))
    report.unattached = [
        (annotation.annotation_id, upstream_id, annotation.data_product_uid)
        for annotation, upstream_id in imported
        if annotation.data_product_uid not in catalogued
    ]
