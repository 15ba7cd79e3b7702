"""The database as the running service sees it: which one it is (for /status
and the start-up log), the check `runservice` makes before it serves, and the
migrations it applies at start-up.

A site that swaps the SKA DPD API image for ours keeps the upstream chart,
which has no migration job and whose service created its own tables; and a
wrong password there used to go unnoticed behind a SQLite fallback. So the
service refuses to start on a configuration the server refuses (a wrong
password, an unknown user, database or schema), naming where it came from,
and creates or updates its tables itself. A server that is merely
unreachable is not a configuration error: the service serves, /status says
the database is down, and the next start migrates.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.db import DatabaseError, OperationalError, ProgrammingError, connection

from dpd import database_env

# libpq's and the server's words for a configuration the server refuses; a
# connection refused, a timeout or "the database system is starting up" are
# passing states, not among them.
_REFUSALS = (
    "password authentication failed",
    "no password supplied",
    "does not exist",
    "no pg_hba.conf entry",
    "authentication failed",
    "permission denied",
)
# Any constant: two instances starting at once take turns to migrate.
_MIGRATION_LOCK = 7_420_020


class DatabaseMisconfigured(Exception):
    """The server refuses the configuration; the message says what to change."""


def database_in_use() -> dict[str, Any]:
    return database_env.describe(
        connection.settings_dict, settings.DATABASE_SOURCE, settings.DATABASE_SCHEMA
    )


def database_in_use_line() -> str:
    line = database_env.describe_line(
        connection.settings_dict, settings.DATABASE_SOURCE, settings.DATABASE_SCHEMA
    )
    if settings.DATABASE_SOURCE == database_env.FROM_URL and (
        settings.SKA_DATAPRODUCT_API_POSTGRESQL_HOST
    ):
        line += f" ({database_env.UPSTREAM_HOST} is set too: DATABASE_URL wins)"
    return line


def database_check() -> str | None:
    """Connect once. DatabaseMisconfigured when the server refuses us; the
    error as a string when it cannot be reached (serve anyway); None when
    all is well."""
    try:
        connection.ensure_connection()
        if settings.DATABASE_SCHEMA is not None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT current_schema()")
                (schema,) = cursor.fetchone()
            if schema is None:
                raise DatabaseMisconfigured(
                    f"the schema {settings.DATABASE_SCHEMA!r} "
                    "(SKA_DATAPRODUCT_API_POSTGRESQL_SCHEMA) does not exist in "
                    f"{database_in_use_line()}: create it or name another"
                )
    except OperationalError as exc:
        message = str(exc).strip()
        if any(words in message for words in _REFUSALS):
            raise DatabaseMisconfigured(_refusal(message)) from None
        return message
    finally:
        connection.close()
    return None


def _refusal(message: str) -> str:
    text = f"the database refuses the configuration: {database_in_use_line()}: {message}"
    if settings.DATABASE_SOURCE == database_env.FROM_UPSTREAM:
        text += f" (the password came from {settings.DATABASE_PASSWORD_FROM})"
    return text


def database_migrate(stdout) -> None:
    """Apply the migrations, one instance at a time on PostgreSQL."""
    if not settings.IS_POSTGRESQL:
        call_command("migrate", interactive=False, verbosity=0, stdout=stdout)
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [_MIGRATION_LOCK])
    try:
        call_command("migrate", interactive=False, verbosity=0, stdout=stdout)
    except ProgrammingError as exc:
        if "already exists" not in str(exc):
            raise
        # The upstream's own tables share names with ours (dpd_indexing_state).
        raise DatabaseMisconfigured(
            f"cannot create this service's tables in {database_in_use_line()}: "
            f"{str(exc).strip()}. A table of that name that is not ours is in the way, "
            "e.g. the SKA DPD API's own: give this service a schema of its own "
            "(SKA_DATAPRODUCT_API_POSTGRESQL_SCHEMA; docs/operations.md)"
        ) from None
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [_MIGRATION_LOCK])
        except DatabaseError:
            connection.close()  # the lock went with the session
