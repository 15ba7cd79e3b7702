import zoneinfo

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, IntegrityError, connection, transaction

from annotations.upstream_import import upstream_annotations_import, upstream_rows_query


class Command(BaseCommand):
    help = (
        "Bring the annotations of the SKA DPD API this service replaces over from its "
        "PostgreSQL table (default: SKA_DATAPRODUCT_API_POSTGRESQL_ANNOTATIONS_TABLE_NAME in "
        "SKA_DATAPRODUCT_API_POSTGRESQL_SCHEMA of this service's database), with their authors, "
        "texts and times. Safe to run again: rows brought over before are updated if they "
        "changed upstream, never added twice. Annotations on products not catalogued yet are "
        "kept (they show once the product is indexed) and listed. See docs/operations.md."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--database-url",
            help="the upstream's database (postgres://user:password@host:port/dbname) when it "
            "is not this service's",
        )
        parser.add_argument("--schema", default=settings.SKA_DATAPRODUCT_API_POSTGRESQL_SCHEMA)
        parser.add_argument(
            "--table", default=settings.SKA_DATAPRODUCT_API_POSTGRESQL_ANNOTATIONS_TABLE_NAME
        )
        parser.add_argument(
            "--time-zone",
            default="UTC",
            help="the zone of the upstream's timestamps, which carry none (default UTC)",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="report what would change, change nothing"
        )

    def handle(self, *args, database_url, schema, table, time_zone, dry_run, **options):
        try:
            zone = zoneinfo.ZoneInfo(time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise CommandError(f"--time-zone {time_zone!r} is not a time zone name") from None
        rows = _read_rows(database_url, schema, table)
        try:
            report = upstream_annotations_import(
                rows, source=f"{schema}.{table}", zone=zone, dry_run=dry_run
            )
        except IntegrityError as exc:
            raise CommandError(f"another import ran at the same time ({exc}); run again") from None
        for upstream_id, why in report.refused:
            self.stdout.write(f"not imported: upstream row {upstream_id}: {why}")
        for upstream_id, why in report.conflicts:
            self.stdout.write(f"not updated: upstream row {upstream_id}: {why}")
        for annotation_id, upstream_id, uid in report.unattached:
            self.stdout.write(
                f"no product yet: annotation {annotation_id} (upstream row {upstream_id}) on "
                f"{uid}: it shows once that product is indexed"
            )
        self.stdout.write(("dry run, nothing changed: " if dry_run else "") + report.summary())


def _read_rows(database_url: str | None, schema: str, table: str) -> list[tuple]:
    """Every row of the upstream table, read before anything is written."""
    query = upstream_rows_query(schema, table)
    where = "the database at --database-url" if database_url else "this service's database"
    try:
        if database_url:
            with psycopg.connect(database_url, connect_timeout=10) as source:
                return source.execute(query).fetchall()
        if not settings.IS_POSTGRESQL:
            raise CommandError(
                "this service's database is not PostgreSQL: give the upstream's with --database-url"
            )
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(query)
            return cursor.fetchall()
    except (DatabaseError, psycopg.Error) as exc:
        raise CommandError(
            f"cannot read {schema}.{table} in {where}: {str(exc).strip()} (the table is named by "
            "--schema and --table, or SKA_DATAPRODUCT_API_POSTGRESQL_SCHEMA and "
            "SKA_DATAPRODUCT_API_POSTGRESQL_ANNOTATIONS_TABLE_NAME)"
        ) from None
