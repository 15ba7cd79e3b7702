"""The same catalogue on the embedded default (SQLite), in a child process,
answering the requests a test sends it: one test can then compare what
SQLite and PostgreSQL answer to the same request (the suite's own database
is PostgreSQL; one process cannot run the ORM on both).

Run as `python -m tests.database_peer <sqlite file> <base dir>`: it migrates
the file, catalogues the sample as the `indexed_sample` fixture does, prints
"ready", then reads one JSON request a line ({"path", "body"}) and writes one
JSON answer a line ({"status", "body", "statements"}).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


class Peer:
    """The parent's handle on the child process."""

    def __init__(self, sqlite_file: Path, base_dir: Path):
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{sqlite_file}",
            "DJANGO_SETTINGS_MODULE": "dpd.settings",
            "DPD_THROTTLE_ANON_RATE": "",
            "PYTHONPATH": str(ROOT),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.database_peer", str(sqlite_file), str(base_dir)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            self.close()
            raise RuntimeError(f"the SQLite peer did not start: {line!r}")

    def post(self, path: str, body: Any) -> dict[str, Any]:
        """{"status", "body" (parsed JSON, or the text), "statements"}."""
        self.process.stdin.write(json.dumps({"path": path, "body": body}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the SQLite peer stopped")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _serve(sqlite_file: str, base_dir: str) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from tests.conftest import UPSTREAM_ROOT, catalogue_sample

    assert connection.vendor == "sqlite", sqlite_file
    call_command("migrate", verbosity=0, interactive=False)
    settings.BASE_DIR = Path(base_dir)
    settings.PERSISTENT_STORAGE_PATH = UPSTREAM_ROOT
    catalogue_sample(Path(base_dir))
    client = Client()
    print("ready", flush=True)
    for line in sys.stdin:
        asked = json.loads(line)
        with CaptureQueriesContext(connection) as queries:
            response = client.post(
                asked["path"], json.dumps(asked["body"]), content_type="application/json"
            )
        text = response.content.decode()
        try:
            body = json.loads(text)
        except ValueError:
            body = text
        answer = {"status": response.status_code, "body": body, "statements": len(queries)}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    _serve(*sys.argv[1:3])


@pytest.fixture(scope="session")
def sqlite_peer(tmp_path_factory) -> Iterator[Peer]:
    """The indexed_sample catalogue on SQLite, in a child process."""
    base = tmp_path_factory.mktemp("sqlite-peer")
    peer = Peer(base / "dpd.sqlite3", base)
    yield peer
    peer.close()
