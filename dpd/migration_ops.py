"""Migration operations that only touch PostgreSQL.

GIN and trigram indexes exist only on PostgreSQL, the production and test
database; the embedded SQLite default keeps the same model state without them.
"""

from django.db.migrations.operations.base import Operation


class PostgreSQLOnly(Operation):
    """Run the wrapped operation's SQL on PostgreSQL only; keep its state everywhere."""

    reversible = True

    def __init__(self, operation: Operation):
        self.operation = operation

    def deconstruct(self):
        return (self.__class__.__qualname__, [self.operation], {})

    def state_forwards(self, app_label, state):
        self.operation.state_forwards(app_label, state)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            self.operation.database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            self.operation.database_backwards(app_label, schema_editor, from_state, to_state)

    def describe(self):
        return f"{self.operation.describe()} (PostgreSQL only)"

    @property
    def migration_name_fragment(self):
        return self.operation.migration_name_fragment
