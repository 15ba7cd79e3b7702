import django.contrib.postgres.indexes
from django.db import migrations

import dpd.models


class Migration(migrations.Migration):
    dependencies = [
        ("dpd", "0007_open_display_order"),
    ]

    operations = [
        # Hand-written: the index's expression is now one ExecutionBlockSearchText()
        # instead of a chain of Replace(); its SQL is the same expression, so the
        # database keeps the index 0004 built and only the state changes.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(
                    model_name="dataproduct",
                    name="dpd_execution_block_trgm",
                ),
                migrations.AddIndex(
                    model_name="dataproduct",
                    index=django.contrib.postgres.indexes.GinIndex(
                        django.contrib.postgres.indexes.OpClass(
                            dpd.models.ExecutionBlockSearchText(), name="gin_trgm_ops"
                        ),
                        name="dpd_execution_block_trgm",
                    ),
                ),
            ],
        ),
    ]
