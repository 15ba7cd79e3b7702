# Hand-written: a count of the statements that removed products, kept by a
# trigger (dpd.models.CatalogueRemovals says why).

from django.db import migrations, models

# One upsert per DELETE statement on PostgreSQL; SQLite has row triggers only
# (the embedded default: one per removed row).
POSTGRESQL = [
    """
    CREATE FUNCTION dpd_count_removal() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO dpd_catalogue_removals (id, removals) VALUES (1, 1)
        ON CONFLICT (id) DO UPDATE SET removals = dpd_catalogue_removals.removals + 1;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER dpd_count_removal AFTER DELETE ON dpd_dataproduct
    FOR EACH STATEMENT EXECUTE FUNCTION dpd_count_removal()
    """,
]
POSTGRESQL_BACKWARDS = [
    "DROP TRIGGER dpd_count_removal ON dpd_dataproduct",
    "DROP FUNCTION dpd_count_removal()",
]
SQLITE = [
    """
    CREATE TRIGGER dpd_count_removal AFTER DELETE ON dpd_dataproduct BEGIN
        INSERT INTO dpd_catalogue_removals (id, removals) VALUES (1, 1)
        ON CONFLICT (id) DO UPDATE SET removals = removals + 1;
    END
    """,
]
SQLITE_BACKWARDS = ["DROP TRIGGER dpd_count_removal"]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("dpd", "0015_sort_indexes")]

    operations = [
        migrations.CreateModel(
            name="CatalogueRemovals",
            fields=[
                ("id", models.PositiveSmallIntegerField(primary_key=True, serialize=False)),
                ("removals", models.BigIntegerField()),
            ],
            options={"db_table": "dpd_catalogue_removals"},
        ),
        migrations.RunPython(
            _run({"postgresql": POSTGRESQL, "sqlite": SQLITE}),
            _run({"postgresql": POSTGRESQL_BACKWARDS, "sqlite": SQLITE_BACKWARDS}),
        ),
    ]
