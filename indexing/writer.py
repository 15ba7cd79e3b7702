"""Write batches of parsed products to the catalogue, upserting by metadata_file.

Two writers with one contract, `write(items)` inside the caller's transaction:
- `CopyWriter` (PostgreSQL): COPY the batch into a temporary table, then one
  INSERT ... SELECT ... ON CONFLICT (metadata_file) DO UPDATE. The workers
  hand over JSON columns already serialised (parsing.py, `json_text`), so the
  indexer's single writing process only streams rows: no model instances, no
  per-value adaptation in Python. On a cold index this process was the
  bottleneck with bulk_create, which builds a model and adapts every value.
- `OrmWriter` (SQLite, the embedded default, and anything else):
  bulk_create(update_conflicts=True) with the same upsert semantics.

Every batch commits with synchronous_commit off: a crash can lose the last
batches' commits, and the next run, finding their files unchanged on disk but
not in the table, writes them again.
"""

from __future__ import annotations

from operator import itemgetter

from django.db import connection
from django.utils import timezone

from dpd.models import DataProduct
from indexing.parsing import Parsed

# Set by the writer besides the columns DataProduct.fields_from() fills.
WRITER_FIELDS = ["source", "file_mtime_ns", "file_size"]
STAGING_TABLE = "dpd_index_batch"


def writer_for_connection() -> OrmWriter | CopyWriter:
    """The fastest writer the default database supports."""
    if connection.vendor == "postgresql":
        return CopyWriter()
    return OrmWriter()


def json_as_text() -> bool:
    """Whether workers should serialise JSON columns (the COPY writer wants text)."""
    return connection.vendor == "postgresql"


class OrmWriter:
    def write(self, items: list[Parsed]) -> None:
        DataProduct.objects.bulk_create(
            [
                DataProduct(
                    **item.fields,
                    source=DataProduct.Source.VOLUME,
                    file_mtime_ns=item.mtime_ns,
                    file_size=item.size,
                )
                for item in items
            ],
            update_conflicts=True,
            unique_fields=["metadata_file"],
            update_fields=[
                *(name for name in items[0].fields if name != "metadata_file"),
                *WRITER_FIELDS,
                "indexed_at",
            ],
        )


class CopyWriter:
    def write(self, items: list[Parsed]) -> None:
        quote = connection.ops.quote_name
        field_names = list(items[0].fields)
        values = itemgetter(*field_names)
        names = [*field_names, *WRITER_FIELDS]
        columns = ", ".join(quote(DataProduct._meta.get_field(name).column) for name in names)
        table = quote(DataProduct._meta.db_table)
        updates = ", ".join(
            f"{column} = EXCLUDED.{column}"
            for column in (*columns.split(", "), quote("indexed_at"))
            if column != quote("metadata_file")
        )
        source = DataProduct.Source.VOLUME.value
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
            # Typed like the table's columns, no constraints, gone at commit.
            cursor.execute(
                f"CREATE TEMPORARY TABLE {STAGING_TABLE} ON COMMIT DROP AS "
                f"SELECT {columns} FROM {table} WITH NO DATA"
            )
            with cursor.cursor.copy(f"COPY {STAGING_TABLE} ({columns}) FROM STDIN") as copy:
                for item in items:
                    copy.write_row((*values(item.fields), source, item.mtime_ns, item.size))
            cursor.execute(
                f"INSERT INTO {table} ({columns}, {quote('indexed_at')}) "
                f"SELECT {columns}, %s FROM {STAGING_TABLE} "
                f"ON CONFLICT ({quote('metadata_file')}) DO UPDATE SET {updates}",
                [timezone.now()],
            )
            # ON COMMIT DROP is not enough inside a caller's transaction (a savepoint).
            cursor.execute(f"DROP TABLE {STAGING_TABLE}")
