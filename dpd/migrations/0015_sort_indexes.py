# Hand-written: the grid's sort indexes (dpd/search_sort.py), built while the service runs.

import django.contrib.postgres.operations
from django.db import migrations, models

import dpd.migration_ops
import dpd.search_sort

# dpd_sort_key: a document value as a B-tree key. JSON null is no value; a
# value whose text is over 1,000 bytes (search_sort.SORT_KEY_MAX_BYTES) is
# keyed by its first 250 characters (SORT_KEY_PREFIX_CHARS), so that every
# key fits an index entry. STRICT: a missing value stays NULL. Not inlined
# (STRICT with a CASE body), so the document is read once per call.
SORT_KEY_FUNCTION = """
CREATE OR REPLACE FUNCTION dpd_sort_key(value jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
SELECT CASE
    WHEN value = 'null'::jsonb THEN NULL
    WHEN octet_length(value::text) <= 1000 THEN value
    WHEN jsonb_typeof(value) = 'string' THEN to_jsonb(left(value #>> '{}', 250))
    ELSE to_jsonb(left(value::text, 250))
END
$$
"""
# As dpd.search_sort.INDEXED was when this migration was written.
INDEXED = {
    "config.processing_block": "pb",
    "config.processing_script": "script",
    "context.observer": "observer",
    "context.intent": "intent",
    "context.notes": "notes",
}


def _index(field: str, short: str, descending: bool) -> models.Index:
    return models.Index(
        models.OrderBy(dpd.search_sort.SortKey(field), descending=descending, nulls_last=True),
        models.OrderBy(models.F("date_created"), descending=True),
        models.OrderBy(models.F("id")),
        name=f"dpd_sort_{short}_{'desc' if descending else 'asc'}",
    )


def _build(index: models.Index) -> list:
    return [
        # An index left INVALID by a build cut short would stop the next one.
        dpd.migration_ops.PostgreSQLOnly(
            migrations.RunSQL(
                f"DROP INDEX CONCURRENTLY IF EXISTS {index.name}", migrations.RunSQL.noop
            )
        ),
        dpd.migration_ops.PostgreSQLOnly(
            django.contrib.postgres.operations.AddIndexConcurrently(
                model_name="dataproduct", index=index
            )
        ),
        # ANALYZE needs no statistics of the key (search_sort.without_statistics).
        dpd.migration_ops.PostgreSQLOnly(
            migrations.RunSQL(
                f'ALTER INDEX "{index.name}" ALTER COLUMN 1 SET STATISTICS 0',
                migrations.RunSQL.noop,
            )
        ),
    ]


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY: the service reads and writes the table meanwhile.
    atomic = False

    dependencies = [
        ("dpd", "0014_fill_field_values"),
    ]

    operations = [
        dpd.migration_ops.PostgreSQLOnly(
            migrations.RunSQL(SORT_KEY_FUNCTION, "DROP FUNCTION IF EXISTS dpd_sort_key(jsonb)")
        ),
        # Enough memory to sort each index's entries in one pass (this session only).
        dpd.migration_ops.PostgreSQLOnly(
            migrations.RunSQL("SET maintenance_work_mem = '256MB'", migrations.RunSQL.noop)
        ),
        *(
            operation
            for field, short in INDEXED.items()
            for descending in (False, True)
            for operation in _build(_index(field, short, descending))
        ),
    ]
