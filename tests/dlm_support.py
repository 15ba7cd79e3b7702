"""The DLM's test schema (sample_data/dlm/dlm-schema.sql, a copy of the reference fixture) in a real
PostgreSQL database, and the `dlm` connection pointed at it as one of the
schema's reader roles.

The schema's file drops schema `dlm` first: it is only ever loaded into the
test database (or a throwaway server). The rows these tests add to it are
written by psql, as the test database's owner: the service itself never
writes the DLM's tables.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections

from dlm_bridge import probe

SCHEMA_FILE = Path(settings.BASE_DIR) / "sample_data" / "dlm" / "dlm-schema.sql"
# Items the fixture file does not have: metadata without storage (and with an
# access group), and minimal metadata whose execution block has no date.
EXTRA_ROWS = """
INSERT INTO dlm.data_item (uid, item_name, item_type, item_state, metadata) VALUES
  ('44444444-0000-4000-8000-000000000001', 'private/no-storage', 'container', 'READY',
   '{"execution_block": "eb-m009-20260201-00001",
     "context": {"access_group": "dlm-team", "intent": "private"},
     "config": {"processing_block": "pb-m009-20260201-00001"}}'),
  ('44444444-0000-4000-8000-000000000002', 'minimal', 'file', 'READY',
   '{"execution_block": "eb-nodate"}');
"""
FULL, ITEMS_ONLY, NO_ACCESS = "dlm_reader_full", "dlm_reader_items", "dlm_no_access"

CONTAINER = "33333333-0000-4000-8000-000000000001"
CHILD = "33333333-0000-4000-8000-000000000007"
MIGRATED = "33333333-0000-4000-8000-000000000002"
ON_S3 = "33333333-0000-4000-8000-000000000003"
EXPIRED = "33333333-0000-4000-8000-000000000004"
NO_METADATA = ("33333333-0000-4000-8000-000000000005", "33333333-0000-4000-8000-000000000006")
NO_STORAGE = "44444444-0000-4000-8000-000000000001"
MINIMAL = "44444444-0000-4000-8000-000000000002"
LISTED = {CONTAINER, MIGRATED, ON_S3, MINIMAL}  # open, not deleted or expired


def psql_args(settings_dict: dict[str, Any]) -> list[str]:
    return [
        "psql",
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        str(settings_dict["HOST"] or "127.0.0.1"),
        "-p",
        str(settings_dict["PORT"] or 5432),
        "-U",
        str(settings_dict["USER"]),
        "-d",
        str(settings_dict["NAME"]),
    ]


def load_schema(settings_dict: dict[str, Any]) -> None:
    """dlm-schema.sql and the extra rows, into the database of `settings_dict`."""
    env = {"PATH": "/usr/bin:/bin", "PGPASSWORD": str(settings_dict.get("PASSWORD") or "")}
    for argv in (["-f", str(SCHEMA_FILE)], ["-c", EXTRA_ROWS]):
        done = subprocess.run(
            [*psql_args(settings_dict), *argv], capture_output=True, text=True, env=env
        )
        if done.returncode:
            raise RuntimeError(f"loading the DLM schema failed: {done.stderr}")


@contextlib.contextmanager
def dlm_connection(**changes: Any) -> Iterator[None]:
    """The `dlm` alias as a connection of its own with other settings (a role,
    another server): a new wrapper, outside the test case's transaction of the
    mirrored alias (which a role change would have to close)."""
    saved = connections["dlm"]
    connection = saved.__class__({**saved.settings_dict, **changes}, "dlm")
    connections["dlm"] = connection
    probe.forget()
    try:
        yield
    finally:
        connection.close()
        connections["dlm"] = saved
        probe.forget()


def as_role(role: str):
    return dlm_connection(USER=role, PASSWORD=role)
