"""Real service processes for the fault tests: `runservice` (gunicorn +
qcluster), its two sides apart (`runweb`, `runworker`), `qcluster` alone,
`reindex`, each in its own process group so a test can SIGKILL one with all
its workers, and teardown never leaks any."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote

from django.conf import settings

MANAGE = str(settings.BASE_DIR / "manage.py")


def database_url(settings_dict: dict[str, Any]) -> str:
    """A DATABASE_URL for another process to reach the same database."""
    user = quote(settings_dict.get("USER") or "")
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{quote(password)}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], Any], *, timeout: float, what: str, every: float = 0.1):
    """Poll until predicate() is truthy and return it; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class Process:
    """One child process (and its process group) with its output in a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.in_new_container = argv[:1] == ["unshare"] and "--pid" in argv
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            argv,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=settings.BASE_DIR,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the process and everything in its group (no clean-up runs)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def kill_tree(self) -> None:
        """SIGKILL the process and all its descendants at once, as an OOM kill
        of the container or a node failure does (stopped first, so nothing
        reacts or respawns in between)."""
        pids = [self.pid, *descendants(self.pid)]
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, wait, then SIGKILL the group: nothing is left running.
        In a new container the SIGTERM goes to the group: `unshare --fork`
        does not pass it on to the command it runs, which then waited out
        the whole timeout."""
        if self.alive():
            if self.in_new_container:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGTERM)
            else:
                self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        code = self.popen.poll()
        self._kill_descendant_groups()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._log.close()
        return code

    def _kill_descendant_groups(self) -> None:
        # runservice puts gunicorn and qcluster in process groups of their own.
        for child in child_pids(self.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        for child in child_pids(stack.pop()):
            found.append(child)
            stack.append(child)
    return found


def child_pids(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


class ServiceSet:
    """Starts processes with a shared environment and stops them all at the end."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.processes: list[Process] = []

    def _start(
        self,
        name: str,
        args: list[str],
        extra_env: dict[str, str],
        host: str = "",
        new_container: bool = False,
    ) -> Process:
        env = {**self.env, **extra_env}
        argv = [sys.executable, MANAGE, *args]
        if host:
            argv = on_another_host(host, argv)
        if new_container:
            argv = in_a_new_container(argv)
        process = Process(name, argv, env, self.log_dir)
        self.processes.append(process)
        return process

    def runservice(
        self,
        name: str,
        workers: int = 1,
        host: str = "",
        new_container: bool = False,
        **extra_env: str,
    ) -> Service:
        """`host`: run it as on another machine of that name (on_another_host);
        `new_container`: as a container restarted in its pod (in_a_new_container)."""
        port = free_port()
        process = self._start(
            name,
            [
                "runservice",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--grace",
                "10",
            ],
            {"DPD_INSTANCE_NAME": name, **extra_env},
            host,
            new_container,
        )
        return Service(process, f"http://127.0.0.1:{port}")

    def runweb(self, name: str, workers: int = 1, **extra_env: str) -> Service:
        """The web side alone (`manage.py runweb`: gunicorn, no background work)."""
        port = free_port()
        args = ["runweb", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
        process = self._start(name, args, {"DPD_INSTANCE_NAME": name, **extra_env})
        return Service(process, f"http://127.0.0.1:{port}")

    def runworker(self, name: str, **extra_env: str) -> Process:
        """The worker side alone (`manage.py runworker`: qcluster, schedules, start-up)."""
        args = ["runworker", "--grace", "10"]
        return self._start(name, args, {"DPD_INSTANCE_NAME": name, **extra_env})

    def command(self, name: str, *args: str, **extra_env: str) -> Process:
        return self._start(name, list(args), {"DPD_INSTANCE_NAME": name, **extra_env})

    def stop_all(self) -> None:
        for process in self.processes:
            process.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.output()[-4000:]}" for p in self.processes)


@contextlib.contextmanager
def running_services(volume: Path, log_dir: Path, **env: str) -> Iterator[ServiceSet]:
    """A ServiceSet on this test run's database and `volume`, with `env` on top;
    every process it started is stopped at the end."""
    from django.db import connection

    started = ServiceSet(
        {
            **os.environ,
            "DATABASE_URL": database_url(connection.settings_dict),
            "PERSISTENT_STORAGE_PATH": str(volume),
            "PYTHONUNBUFFERED": "1",
            **env,
        },
        log_dir,
    )
    try:
        yield started
    except BaseException:
        # The processes' own account of a failure: pytest shows it with the test's.
        print(started.logs())
        raise
    finally:
        started.stop_all()


@contextlib.contextmanager
def postgres_services(volume: Path, log_dir: Path, **env: str) -> Iterator[ServiceSet]:
    """running_services, which only PostgreSQL can serve: several processes
    share the test database (unavailable on SQLite: a skip, a failure with CI=true)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        unavailable("processes sharing the test database need PostgreSQL (DATABASE_URL)")
    with running_services(volume, log_dir, **env) as started:
        yield started


def on_another_host(host: str, argv: list[str]) -> list[str]:
    """argv run in a UTS namespace of its own whose host name is `host`: to
    the leader rules, a process on another machine (it cannot see whether a
    process of this machine still runs). Needs root or user namespaces."""
    if not shutil.which("unshare"):
        unavailable("`unshare` (util-linux) is needed to run an instance as on another host")
    probe = subprocess.run(
        [*_UNSHARE, "true"] if os.geteuid() == 0 else [*_UNSHARE_USER, "true"],
        capture_output=True,
    )
    if probe.returncode:
        unavailable(f"cannot make a UTS namespace: {probe.stderr.decode().strip()}")
    unshare = _UNSHARE if os.geteuid() == 0 else _UNSHARE_USER
    return [*unshare, "sh", "-c", 'hostname "$0" && exec "$@"', host, *argv]


def in_a_new_container(argv: list[str]) -> list[str]:
    """argv run as a container restarted in its Kubernetes pod: a pid namespace
    (and /proc) of its own, the same host name and network. Needs root."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        unavailable("running a process in a new pid namespace needs root and `unshare`")
    return ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", *argv]


_UNSHARE = ["unshare", "--uts"]
_UNSHARE_USER = ["unshare", "--user", "--map-root-user", "--uts"]


def unavailable(reason: str) -> None:
    """A service a test needs is missing: a failure in CI (CI=true), where
    nothing may be skipped, a skip elsewhere."""
    import pytest

    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """An HTTP answer read off a raw socket until the server closes it: its
    status (whose reason phrase must be the standard one), headers and body."""
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    _, status, reason = status_line.split(" ", 2)
    assert reason == HTTPStatus(int(status)).phrase, status_line
    return int(status), headers, body


class Service:
    """A runservice instance and its HTTP address."""

    def __init__(self, process: Process, base_url: str) -> None:
        self.process = process
        self.base_url = base_url

    def get(self, path: str, timeout: float = 5) -> tuple[int, Any, dict[str, str]]:
        """(status, JSON body or None, headers); status 0 when nothing answers."""
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=timeout) as response:
                return response.status, _json(response.read()), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, _json(error.read()), dict(error.headers)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, None, {}

    def post_json(self, path: str, body: dict[str, Any], timeout: float = 5) -> int:
        request = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0

    def wait_ready(self, timeout: float = 60) -> dict[str, Any]:
        def ready():
            assert self.process.alive(), f"{self.process.name} exited:\n{self.process.output()}"
            status, body, _ = self.get("/status")
            return body if status == 200 else None

        return wait_for(ready, timeout=timeout, what=f"{self.process.name} to serve /status")


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


PG_BIN = Path("/usr/lib/postgresql/15/bin")


class ThrowawayPostgres:
    """A PostgreSQL 15 server of our own in a temp dir, so a test may stop and
    start it without touching the shared server (or the CI's pg_virtualenv
    cluster). initdb refuses root: as root it runs as the `postgres` user."""

    def __init__(self, password: str | None = None) -> None:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(f"PostgreSQL 15 binaries not found in {PG_BIN}")
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.port = free_port()
        # Not under pytest's tmp_path: its parents are private to root.
        self.base = Path(tempfile.mkdtemp(prefix="dpd-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        if self.as_user:
            entry = pwd.getpwnam("postgres")
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        self.password = password
        auth = ["-A", "trust"]
        if password is not None:
            # TCP clients must give the password; the socket (our own set-up) need not.
            pwfile = self.base / "pwfile"
            pwfile.write_text(password + "\n")
            if self.as_user:
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        self._run(PG_BIN / "initdb", "-D", self.data, *auth, "-U", "postgres", "-E", "UTF8")
        self.start()
        self._run(PG_BIN / "createdb", "-h", self.base, "-p", self.port, "-U", "postgres", "dpd")

    @property
    def url(self) -> str:
        secret = f":{quote(self.password)}" if self.password else ""
        return f"postgres://postgres{secret}@127.0.0.1:{self.port}/dpd"

    def _run(self, *argv: object) -> None:
        command = [*self.as_user, *map(str, argv)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.base)
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.base}"
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "start")

    def stop(self) -> None:
        """A fast shutdown: every client connection is cut."""
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)
