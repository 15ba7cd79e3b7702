# Hand-written: fill DataProduct.field_values (0013) while the service runs.

import django.contrib.postgres.indexes
import django.contrib.postgres.operations
from django.db import migrations, transaction

import dpd.migration_ops
from dpd.search_text import GS, field_values

BATCH = 2000
INDEX = "dpd_field_values_gin"


def fill_field_values(apps, schema_editor):
    """Every row without field values gets those of its stored search text:
    a re-index would skip unchanged files and leave them without (no equals
    filter would find them). Read from the search text, not the document:
    the same elements the writers store, at a fraction of the cost.

    Each batch commits on its own, so the service keeps reading and writing
    the table meanwhile (one transaction took 22 min at 1,000,000 products,
    with every read of the table waiting behind 0013's lock), and a fill cut
    short goes on where it stopped when the migration runs again. On
    PostgreSQL one UPDATE per batch (each row's elements joined by GS, which
    no element holds), not one per row."""
    connection = schema_editor.connection
    products = apps.get_model("dpd", "DataProduct").objects.using(connection.alias)
    empty = products.filter(field_values__isnull=True).order_by("pk")
    last = 0
    while batch := list(empty.filter(pk__gt=last).values_list("pk", "search_text")[:BATCH]):
        with transaction.atomic(using=connection.alias):
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(
                        "UPDATE dpd_dataproduct AS p "
                        "SET field_values = string_to_array(v.joined, %s) "
                        "FROM unnest(%s::bigint[], %s::text[]) AS v(id, joined) "
                        "WHERE p.id = v.id AND p.field_values IS NULL",
                        [GS, [pk for pk, _ in batch], [GS.join(field_values(t)) for _, t in batch]],
                    )
            else:
                rows = [products.model(pk=pk, field_values=field_values(t)) for pk, t in batch]
                products.bulk_update(rows, ["field_values"])
        last = batch[-1][0]


class Migration(migrations.Migration):
    # Batches commit one by one; the index is built CONCURRENTLY (no lock on writes).
    atomic = False

    dependencies = [
        ("dpd", "0013_field_values"),
    ]

    operations = [
        migrations.RunPython(fill_field_values, migrations.RunPython.noop, elidable=True),
        # An index left INVALID by a build cut short would stop the next one.
        dpd.migration_ops.PostgreSQLOnly(
            migrations.RunSQL(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}", migrations.RunSQL.noop)
        ),
        # Enough memory to build the GIN index in one pass (for this session only).
        dpd.migration_ops.PostgreSQLOnly(
            migrations.RunSQL("SET maintenance_work_mem = '256MB'", migrations.RunSQL.noop)
        ),
        dpd.migration_ops.PostgreSQLOnly(
            django.contrib.postgres.operations.AddIndexConcurrently(
                model_name="dataproduct",
                index=django.contrib.postgres.indexes.GinIndex(fields=["field_values"], name=INDEX),
            ),
        ),
        # Rows that web pods of the previous version ingested meanwhile (they
        # do not know the column): the build takes minutes on a large catalogue.
        migrations.RunPython(fill_field_values, migrations.RunPython.noop, elidable=True),
    ]
