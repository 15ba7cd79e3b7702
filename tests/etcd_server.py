"""A real etcd (Debian's etcd-server) for the tests: free 127.0.0.1 ports, a
temp data dir, killed by PID. Without the binary the tests that need it are
skipped, or fail with CI=true (tests.service_processes.unavailable)."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from django.conf import settings

from tests.service_processes import free_port, unavailable

SAMPLE = settings.BASE_DIR / "sample_data" / "sdp" / "sdp-etcd-sample.json"


def sample_keys() -> dict[str, Any]:
    """The 27 keys of the SDP sample (reference dlm-sdp.md 2.8)."""
    return json.loads(SAMPLE.read_text())


class EtcdServer:
    """One etcd member; stop() and start() keep its data (a restart)."""

    def __init__(self) -> None:
        self.binary = shutil.which("etcd")
        if self.binary is None:
            raise FileNotFoundError("etcd (Debian etcd-server) is not installed")
        self.base = Path(tempfile.mkdtemp(prefix="dpd-etcd-"))
        self.port = free_port()
        self.peer_port = free_port()
        self.process: subprocess.Popen | None = None
        self._client = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15) -> None:
        peer = f"http://127.0.0.1:{self.peer_port}"
        log = (self.base / "etcd.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                "--name",
                "t",
                "--data-dir",
                str(self.base / "data"),
                "--listen-client-urls",
                self.url,
                "--advertise-client-urls",
                self.url,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                f"t={peer}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = (self.base / "etcd.log").read_text(errors="replace")[-3000:]
                self.stop()
                raise RuntimeError(f"etcd did not become healthy:\n{output}")
            time.sleep(0.02)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as answer:
                return json.loads(answer.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    def stop(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    # -- writing keys, as the SDP would ------------------------------------------

    @property
    def client(self):
        import etcd3

        if self._client is None:
            self._client = etcd3.client(host="127.0.0.1", port=self.port, timeout=5)
        return self._client

    def put(self, key: str, value: Any, *, raw: bool = False) -> int:
        """Put a JSON value (or raw bytes/str); returns the new revision."""
        data = value if raw else json.dumps(value)
        return self.client.put(key, data).header.revision

    def delete(self, key: str) -> None:
        self.client.delete(key)

    def clear(self) -> None:
        self.client.delete_prefix("/")

    def load(self, keys: dict[str, Any] | None = None, prefix: str = "") -> int:
        revision = 0
        for key, value in (sample_keys() if keys is None else keys).items():
            revision = self.put(prefix + key, value)
        return revision

    def revision(self) -> int:
        return self.client.get_response("/").header.revision

    def compact(self) -> int:
        """Compact every revision before the current one; returns it."""
        revision = self.revision()
        self.client.compact(revision, physical=True)
        return revision


def start_etcd() -> EtcdServer:
    try:
        server = EtcdServer()
    except FileNotFoundError as exc:
        unavailable(str(exc))
    try:
        server.start()
    except RuntimeError as exc:
        server.destroy()
        unavailable(str(exc))
    return server
