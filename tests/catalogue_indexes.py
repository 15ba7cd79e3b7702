"""The catalogue's search indexes (GIN) and the grid's sort indexes as
PostgreSQL has them now (the indexer drops them for a bulk load and builds
them back)."""

from django.contrib.postgres.indexes import GinIndex
from django.db import connection

from dpd.models import DataProduct
from dpd.search_sort import sort_indexes

# Metadata containment, search text and execution block trigrams, field
# values; the sorts on the grid's visible document columns.
SEARCH_INDEXES = {
    *(index.name for index in DataProduct._meta.indexes if isinstance(index, GinIndex)),
    *(index.name for index in sort_indexes()),
}


def search_indexes() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexname = ANY(%s)",
            [DataProduct._meta.db_table, list(SEARCH_INDEXES)],
        )
        return {name for (name,) in cursor.fetchall()}


def sort_keys_analyzed() -> set[str]:
    """The sort indexes whose key ANALYZE samples (statistics target not 0):
    ANALYZE would read every sample row's document again for each."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "WHERE c.relname = ANY(%s) AND a.attnum = 1 AND a.attstattarget <> 0",
            [[index.name for index in sort_indexes()]],
        )
        return {name for (name,) in cursor.fetchall()}
