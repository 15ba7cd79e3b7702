"""Write batches of parsed products to the catalogue, upserting by metadata_file.

Two writers with one contract: `begin()` before the run, `write(items)` inside
the caller's transaction, `finish()` after the run (always, even on error):
- `CopyWriter` (PostgreSQL): COPY the batch into a temporary table, then one
  INSERT ... SELECT ... ON CONFLICT (metadata_file) DO UPDATE. The workers
  hand over JSON and array columns as text (parsing.py, `copy_text`), so the
  indexer's single writing process only streams rows: no model instances, no
  per-value adaptation in Python. On a cold index this process was the
  bottleneck with bulk_create, which builds a model and adapts every value.
- `OrmWriter` (SQLite, the embedded default, and anything else):
  bulk_create(update_conflicts=True) with the same upsert semantics.

Every batch commits with synchronous_commit off: a crash can lose the last
batches' commits, and the next run, finding those files missing from the
table, writes them again.
"""

from __future__ import annotations

import logging
import threading
from operator import itemgetter

from django.contrib.postgres.indexes import GinIndex
from django.db import connection, transaction
from django.db.migrations.loader import MigrationLoader
from django.db.models import Index
from django.utils import timezone

from dpd.models import DataProduct
from dpd.search_sort import sort_indexes, without_statistics
from indexing.parsing import Parsed

# Set by the writer besides the columns DataProduct.fields_from() fills.
WRITER_FIELDS = ["source", "file_mtime_ns", "file_size"]
STAGING_TABLE = "dpd_index_batch"
# Memory for merging GIN pending lists (the pg_trgm index on search_text is
# most of an incremental run's database time).
GIN_WORK_MEM = "64MB"
# SET LOCAL in every batch's transaction. The pending list keeps its default
# size (4 MB): a longer one made big loads into a filled catalogue cheaper,
# but every key:value search scans the pending list entry by entry, so
# searches during such a load slowed down (bench_indexing). A first load
# drops the GIN indexes anyway (CopyWriter.begin).
BATCH_SETTINGS = [
    "synchronous_commit = off",
    f"work_mem = '{GIN_WORK_MEM}'",
]
# pg_advisory_xact_lock key serialising the drop and build of the load indexes
# ("dpd_gin": the key of the GIN indexes alone, kept so that a run of the
# previous version takes the same lock).
LOAD_INDEXES_LOCK = 0x6470645F67696E
# Building an index after a load into an empty table (CopyWriter.begin).
INDEX_BUILD_MEM = "256MB"
# The GIN index that takes longest to build (24,000 products: 7.8 s, the
# others 3.2 s together): built on the run's connection while a second one
# builds the others (CopyWriter.build).
LONGEST_BUILD = "dpd_search_text_trgm"
# How long the second connection waits for the table's lock before leaving
# its indexes to the first (a migration queued for the table, say).
APART_LOCK_TIMEOUT = "5s"
# The grid's sort indexes (dpd/search_sort.py), dropped and built with the GIN ones.
SORT_INDEXES = {index.name for index in sort_indexes()}
# Compressing the large documents and search texts with lz4 instead of pglz
# (17.1 s -> 15.6 s); only where the server was built with it.
BATCH_SETTINGS_LZ4 = ["default_toast_compression = 'lz4'"]
# A catalogue that grows during a run (a first index above all) is planned
# with the statistics of a smaller table until autovacuum analyzes it again
# (a minute or more later): searches meanwhile read it with plans made for a
# few rows. A batch that brings the rows written since the last ANALYZE to
# this share of the rows then known analyzes the table (bench_indexing,
# search p99 during a first index of 24,000 files: 39 -> 33 ms).
ANALYZE_GROWTH = 0.5
ANALYZE_MIN_ROWS = 500

logger = logging.getLogger(__name__)


def has_lz4(cursor) -> bool:
    """Whether the server can compress stored values with lz4 (built with it)."""
    cursor.execute(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
    )
    (available,) = cursor.fetchone() or (False,)
    return bool(available)


def writer_for_connection(*, bulk_load: bool = False) -> OrmWriter | CopyWriter:
    """The fastest writer the default database supports (`bulk_load`: see CopyWriter)."""
    if connection.vendor == "postgresql":
        return CopyWriter(bulk_load=bulk_load)
    return OrmWriter()


def copy_as_text() -> bool:
    """Whether workers should hand JSON and array columns over as text (the
    COPY writer streams them as they are)."""
    return connection.vendor == "postgresql"


class OrmWriter:
    """bulk_create(update_conflicts=True): SQLite and any other database."""

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

    def begin(self) -> None:
        pass

    def finish(self) -> None:
        pass


def _migrated_index_names() -> set[str]:
    """The DataProduct indexes that the migrations applied to this database define."""
    loader = MigrationLoader(connection)
    label = DataProduct._meta.app_label
    applied = [key for key in loader.applied_migrations if key[0] == label]
    state = loader.project_state(nodes=applied, at_end=True)
    model = state.models[label, DataProduct._meta.model_name]
    return {index.name for index in model.options.get("indexes", [])}


class CopyWriter:
    """COPY into a temporary table, then INSERT ... ON CONFLICT (PostgreSQL).

    With `bulk_load` (the foreground `manage.py reindex`), into an EMPTY table
    (a first index, a new deployment) the GIN and sort indexes (the "load
    indexes") are dropped for the load and built once at the end, the
    documented bulk-load technique: one CREATE INDEX costs less than
    maintaining the pg_trgm index row by row (24,000 products: 26 s against
    32 s for the whole run). Background runs keep them:
    key:value searches during the load (and during the final build, ~11 s per
    24,000 products) would otherwise read every row (bench_indexing, search
    p99 busy/idle 4.0 with the drop, 1.9 without). `finish()` rebuilds
    dropped indexes whatever happened (the indexer calls it in a `finally`),
    and `begin()` restores any that a killed run left dropped.
    """

    def __init__(self, *, bulk_load: bool = False) -> None:
        self.bulk_load = bulk_load
        self.table = DataProduct._meta.db_table
        self.load_indexes = [
            index
            for index in DataProduct._meta.indexes
            if isinstance(index, GinIndex) or index.name in SORT_INDEXES
        ]
        self.dropped: list[Index] = []  # to build when the run ends
        self.maintained: list[Index] = []  # kept up to date by the batches
        self.session: list[str] | None = None
        self.wrote = False
        self.analyzed_rows = 0  # the table's rows at its last ANALYZE (estimated)
        self.written = 0  # rows written since

    def begin(self) -> None:
        """Before the run: drop the load indexes of an empty table for a bulk
        load, else restore any missing ones."""
        side_by_side = not connection.in_atomic_block  # see build()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [self.table])
            self.analyzed_rows = max(0, int(cursor.fetchone()[0]))  # -1: never analyzed
            present, missing = self.lock_and_inspect(cursor)
            if not self.bulk_load or DataProduct.objects.exists():
                self.build(missing, side_by_side=side_by_side)
                self.maintained = present + missing
                return
            with connection.schema_editor() as editor:
                for index in present:
                    editor.remove_index(DataProduct, index)
            self.dropped = present + missing

    def write(self, items: list[Parsed]) -> None:
        quote = connection.ops.quote_name
        table = quote(self.table)
        field_names = list(items[0].fields)
        values = itemgetter(*field_names)
        columns = [
            quote(DataProduct._meta.get_field(name).column)
            for name in (*field_names, *WRITER_FIELDS)
        ]
        listed = ", ".join(columns)
        updates = ", ".join(
            f"{column} = EXCLUDED.{column}"
            for column in (*columns, quote("indexed_at"))
            if column != quote("metadata_file")
        )
        source = DataProduct.Source.VOLUME.value
        with connection.cursor() as cursor:
            if self.session is None:
                lz4 = BATCH_SETTINGS_LZ4 if has_lz4(cursor) else []
                self.session = [*BATCH_SETTINGS, *lz4]
            for setting in self.session:
                cursor.execute(f"SET LOCAL {setting}")
            # Typed like the table's columns, no constraints, gone at commit.
            cursor.execute(
                f"CREATE TEMPORARY TABLE {STAGING_TABLE} ON COMMIT DROP AS "
                f"SELECT {listed} FROM {table} WITH NO DATA"
            )
            with cursor.cursor.copy(f"COPY {STAGING_TABLE} ({listed}) FROM STDIN") as copy:
                for item in items:
                    copy.write_row((*values(item.fields), source, item.mtime_ns, item.size))
            cursor.execute(
                f"INSERT INTO {table} ({listed}, {quote('indexed_at')}) "
                f"SELECT {listed}, %s FROM {STAGING_TABLE} "
                f"ON CONFLICT ({quote('metadata_file')}) DO UPDATE SET {updates}",
                [timezone.now()],
            )
            # ON COMMIT DROP is not enough inside a caller's transaction (a savepoint).
            cursor.execute(f"DROP TABLE {STAGING_TABLE}")
            self.written += len(items)
            if not self.dropped and self.written >= max(
                ANALYZE_MIN_ROWS, ANALYZE_GROWTH * self.analyzed_rows
            ):
                self.analyze(cursor)
        self.wrote = True

    def analyze(self, cursor) -> None:
        """ANALYZE, unless autovacuum (or another run) holds the table's
        statistics lock: never wait for it inside a batch."""
        cursor.execute(f"ANALYZE (SKIP_LOCKED) {connection.ops.quote_name(self.table)}")
        self.analyzed_rows += self.written
        self.written = 0

    def finish(self) -> None:
        """After the run, even a failed one: build the dropped load indexes, or
        merge what the batches left in their pending lists (searches scan a
        pending list entry by entry)."""
        if self.dropped:
            dropped, self.dropped = self.dropped, []
            side_by_side = not connection.in_atomic_block  # see build()
            with transaction.atomic(), connection.cursor() as cursor:
                present, _ = self.lock_and_inspect(cursor)
                missing = [index for index in dropped if index not in present]
                self.build(missing, side_by_side=side_by_side)
                # A first load: the planner knows the table from the start.
                self.analyze(cursor)
        elif self.wrote:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL maintenance_work_mem = '{GIN_WORK_MEM}'")
                for index in self.maintained:
                    if isinstance(index, GinIndex):
                        cursor.execute("SELECT gin_clean_pending_list(%s::regclass)", [index.name])

    def lock_and_inspect(self, cursor) -> tuple[list[Index], list[Index]]:
        """The load indexes present and missing now, under a lock held to the end
        of the transaction (a second run, e.g. a leader taking over, may be at
        it too).

        Only indexes that the applied migrations define can be missing: code
        deployed before its `migrate` must not create an index the migration
        will add.
        """
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOAD_INDEXES_LOCK])
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", [self.table])
        existing = {name for (name,) in cursor.fetchall()}
        present = [index for index in self.load_indexes if index.name in existing]
        missing = [index for index in self.load_indexes if index.name not in existing]
        if missing:
            migrated = _migrated_index_names()
            missing = [index for index in missing if index.name in migrated]
        return present, missing

    def build(self, indexes: list[Index], *, side_by_side: bool) -> None:
        """Build the indexes: the longest on this connection and, meanwhile,
        the others on a second one, as each CREATE INDEX uses one core (a cold
        index of 24,000 products: 11.0 s of builds one after the other, 7.8 s
        side by side). `side_by_side` only when this connection's transaction
        began in build()'s caller: in an enclosing one, the indexes' drops
        may still hold the table, and the second connection would wait for
        them forever. Whatever the second connection did not build, this one
        builds after its own."""
        longest = [index for index in indexes if index.name == LONGEST_BUILD]
        apart = [index for index in indexes if index.name != LONGEST_BUILD]
        if not (side_by_side and longest and apart):
            _build_indexes(indexes)
            return
        left: list[Index] = []
        helper = threading.Thread(target=_build_apart, args=(apart, left), name="index-build")
        helper.start()
        try:
            _build_indexes(longest)
        finally:
            helper.join()
        _build_indexes(left)


def _build_indexes(indexes: list[Index], *settings: str) -> None:
    """Build the indexes in one transaction, with `settings` (SET LOCAL)."""
    if not indexes:
        return
    with connection.schema_editor() as editor:
        # Enough memory to build in one pass (64 MB: twice the time).
        for setting in (f"maintenance_work_mem = '{INDEX_BUILD_MEM}'", *settings):
            editor.execute(f"SET LOCAL {setting}")
        for index in indexes:
            editor.add_index(DataProduct, index)
            if index.name in SORT_INDEXES:
                editor.execute(without_statistics(index.name))


def _build_apart(indexes: list[Index], left: list[Index]) -> None:
    """CopyWriter.build's second connection (this thread's own): build the
    indexes in one transaction, or put them all in `left`."""
    try:
        _build_indexes(indexes, f"lock_timeout = '{APART_LOCK_TIMEOUT}'")
    except Exception:
        logger.warning("Load indexes left to the run's connection", exc_info=True)
        left.extend(indexes)
    finally:
        connection.close()
