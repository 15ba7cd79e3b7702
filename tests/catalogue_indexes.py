"""The catalogue's GIN search indexes as PostgreSQL has them now (the
indexer drops them for a bulk load and builds them back)."""

from django.contrib.postgres.indexes import GinIndex
from django.db import connection

from dpd.models import DataProduct

# Metadata containment, search text and execution block trigrams.
SEARCH_INDEXES = {index.name for index in DataProduct._meta.indexes if isinstance(index, GinIndex)}


def search_indexes() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexname = ANY(%s)",
            [DataProduct._meta.db_table, list(SEARCH_INDEXES)],
        )
        return {name for (name,) in cursor.fetchall()}
