"""Background indexing: search latency during a cold index, leader takeover, crash recovery.

    flock /tmp/bench.lock .venv/bin/python bench/bench_indexing.py \\
        --volume ROOT --database-url postgres://USER@HOST:PORT/DBNAME \\
        [--clients 4] [--stale 10] [--phases search,takeover,recovery,health]

Every process is real: `manage.py runservice` instances (gunicorn + the
django-q2 worker, the way the README runs the service) on one PostgreSQL
database, and search clients in this process (threads, one HTTP connection per
request, a short think time between requests, like dashboards polling).

1. Search during a cold index. The catalogue and the indexing tables are
   emptied, and one instance starts: its start-up indexing scans the whole
   volume in its worker while the clients POST /dataproductsearch (a date
   range, and two key:value pairs: the contract's body, up to
   SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT rows). Requests that began
   and ended inside the run are "busy". When the run has completed, the same
   clients run as long again on the complete catalogue: "idle". The busy
   catalogue grows from empty, so the p99 of the run's second half is printed
   too (when the catalogue is at least half full).
2. Takeover. Tables emptied again; two instances start with
   INDEXING_HEARTBEAT_STALE_SECONDS = --stale (pod-b with start-up indexing
   off); the worker that takes pod-a's start-up task leads. Mid-scan the
   leader (runservice, gunicorn, the worker and its parse processes) is
   SIGKILLed and a replacement starts under a new name, as an orchestrator
   replaces a dead pod; its start-up task, run by whichever worker takes it
   (the follower's idle one or its own), watches the slot and claims it once
   the dead leader's heartbeat is older than the stale limit. Each instance
   runs as on a machine of its own (a UTS namespace named after it, as root),
   as pods on different nodes: on one machine the replacement would prove
   the killed process gone and take over at once (phase 3). Takeover = claim
   time (database clock) - kill time. The run is then awaited and the
   catalogue checked: every metadata file once.
3. Recovery, with the default settings (stale limit 300 s). One instance
   starts a cold index; at a tenth of the volume the whole instance is
   SIGKILLed and started again at once under the same name on this machine,
   as a container restart or systemd does. restart_resume_s = the new claim
   (database clock) - kill time. Mid-run that instance gets SIGTERM:
   sigterm_stop_s = its exit - the signal; the run must be recorded
   `interrupted` and the slot free. It is started again:
   sigterm_resume_s = the next claim - the exit; that run must skip every
   file the interrupted ones wrote, and the catalogue must end exact.

4. Health during a cold index. Tables emptied; one instance starts a cold
   index while --health-clients clients (spread over four processes, raw
   sockets, so that the clients' own GIL does not add to the figure) GET
   /healthz, a new connection per request and --think seconds apart, as
   probes and load balancers do. healthz_p99_busy_ms is the p99 of the
   requests that began and ended inside the run (target: under 5 ms).

The database named by --database-url is created when missing and its
catalogue is EMPTIED (do not point it at data you want). The last line:
`search_p99_busy_vs_idle=R1 takeover_vs_stale=R2 restart_resume_vs_stale=R3 ...` (targets
R1 <= 2, R2 <= 1.1; restart_resume_s <= 10 and sigterm_stop_s <= 10), with the figures
of the phases that ran (healthz_p99_vs_5ms: the health phase's p99 over its 5 ms target).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import bench_database
import psycopg

ROOT = Path(__file__).resolve().parent.parent
METADATA_FILE_NAME = "ska-data-product.yaml"
RUNSERVICE = [sys.executable, "manage.py", "runservice", "--grace", "10"]
# The catalogue and indexing tables a cold start begins without (django-q2's
# queue and results too, so no task of an earlier run is redelivered).
TABLES = [
    "annotations_annotationrevision",
    "annotations_upstreamannotation",
    "annotations_annotation",
    "dpd_dataproduct",
    "dpd_indexing_state",
    "indexing_indexrun",
    "django_q_ormq",
    "django_q_task",
    "django_q_schedule",
]
SEARCHES = [
    {"start_date": "2019-01-01", "end_date": "2026-12-31"},
    {
        "start_date": "2019-01-01",
        "end_date": "2026-12-31",
        "key_value_pairs": [
            "obscore.instrument_name:SKA-Low",
            "config.processing_script:imaging",
        ],
    },
]


SHAPE_NAMES = ["dates", "key:value"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--volume",
        required=True,
        help="volume to index, read only (bench/make_volume.py ROOT 20000)",
    )
    bench_database.add_database_url(parser)
    parser.add_argument("--clients", type=int, default=4, help="concurrent search clients")
    parser.add_argument("--think", type=float, default=0.05, help="seconds between requests")
    parser.add_argument("--idle-seconds", type=float, default=30.0, help="cap of the idle phase")
    parser.add_argument("--stale", type=int, default=10, help="stale limit of the takeover")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers per instance")
    parser.add_argument(
        "--health-clients", type=int, default=16, help="concurrent /healthz clients"
    )
    parser.add_argument(
        "--phases",
        default="search,takeover,recovery,health",
        help="comma-separated phases to run (search, takeover, recovery, health)",
    )
    return bench_database.parse_args(parser)


# --- database ----------------------------------------------------------------------


def empty_tables(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)}")
        conn.execute("VACUUM ANALYZE dpd_dataproduct")


def slot(conn: psycopg.Connection) -> dict | None:
    row = conn.execute(
        "SELECT indexed_by, indexing_running, indexing_step, files_processed, "
        "extract(epoch from started_at), extract(epoch from last_heartbeat) "
        "FROM dpd_indexing_state"
    ).fetchone()
    if row is None:
        return None
    keys = ("indexed_by", "running", "step", "processed", "started_at", "heartbeat")
    return dict(zip(keys, row, strict=True))


def catalogue(url: str) -> tuple[int, int]:
    """(rows, distinct metadata files)."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT count(*), count(DISTINCT metadata_file) FROM dpd_dataproduct"
        ).fetchone()


def metadata_files(root: Path) -> int:
    return sum(METADATA_FILE_NAME in names for _, _, names in os.walk(root))


# --- service instances -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Instance:
    name: str
    popen: subprocess.Popen
    url: str
    log: Path

    def descendants(self) -> list[int]:
        """Every process under runservice (gunicorn, qcluster and their children)."""
        parents: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    parents.setdefault(ppid, []).append(int(entry.name))
        found, stack = [], [self.popen.pid]
        while stack:
            for child in parents.get(stack.pop(), []):
                found.append(child)
                stack.append(child)
        return found

    def kill(self) -> None:
        """SIGKILL the whole instance at once (stopped first so nothing respawns)."""
        pids = [self.popen.pid, *self.descendants()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=30)
        if self.popen.poll() is None or self.descendants():
            self.kill()


def own_host(name: str) -> list[str]:
    """A command prefix that runs an instance as on a machine of its own (a UTS
    namespace named `name`), as pods on different nodes; [] when unshare
    cannot (not root). On one machine an instance would otherwise prove a
    killed leader's process gone and take over at once."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return []
    return ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', name]


def start_instance(
    name: str, env: dict[str, str], workers: int, log_dir: Path, *, host: bool = False
) -> Instance:
    port = free_port()
    log = log_dir / f"{name}.log"
    for attempt in range(2, 100):  # a restart under the same name keeps the first log
        if not log.exists():
            break
        log = log_dir / f"{name}.{attempt}.log"
    prefix = own_host(name) if host else []
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [*prefix, *RUNSERVICE, "--bind", f"127.0.0.1:{port}", "--workers", str(workers)],
            cwd=ROOT,
            env={**env, "DPD_INSTANCE_NAME": name},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    instance = Instance(name, popen, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise SystemExit(f"{name} exited:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            if request(instance.url, "GET", "/status")[0] == 200:
                return instance
        time.sleep(0.2)
    instance.stop()
    raise SystemExit(f"{name} did not answer /status within 60 s")


def request(url: str, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload else {}
        conn.request(method, path, payload, headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# --- search clients ----------------------------------------------------------------


@dataclass
class Clients:
    """Search clients running until stopped; every request's (start, end, status, shape)."""

    url: str
    count: int
    think: float
    samples: list[tuple[float, float, int, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for index in range(self.count):
            thread = threading.Thread(target=self._client, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _client(self, index: int) -> None:
        body_index = index
        while not self._stop.is_set():
            shape = body_index % len(SEARCHES)
            body_index += 1
            started = time.monotonic()
            try:
                status = request(self.url, "POST", "/dataproductsearch", SEARCHES[shape])[0]
            except OSError:
                status = 0
            self.samples.append((started, time.monotonic(), status, shape))
            self._stop.wait(self.think)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def between(self, begin: float, end: float) -> list[tuple[float, float, int, int]]:
        return [s for s in self.samples if s[0] >= begin and s[1] <= end]


def p99_ms(samples: list[tuple[float, float, int, int]]) -> float:
    latencies = sorted(end - start for start, end, *_ in samples)
    if not latencies:
        return float("nan")
    return 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]


def describe(name: str, samples: list[tuple[float, float, int, int]]) -> str:
    latencies = [1000 * (end - start) for start, end, *_ in samples]
    errors = sum(status != 200 for _, _, status, _ in samples)
    median = statistics.median(latencies) if latencies else float("nan")
    return (
        f"search {name:9s} n={len(samples):5d} errors={errors} "
        f"p50={median:.1f} ms p99={p99_ms(samples):.1f} ms"
    )


def wait_slot(url: str, predicate, timeout: float, what: str, every: float = 0.05) -> dict:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            state = slot(conn)
            if state is not None and predicate(state):
                return state
            time.sleep(every)
    raise SystemExit(f"timed out after {timeout} s waiting for {what}")


# --- health clients ----------------------------------------------------------------

HEALTH_PROCESSES = 4


def _health_get(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    return answer.startswith(b"HTTP/1.1 200") or answer.startswith(b"HTTP/1.0 200")


def _health_process(url: str, threads: int, think: float, stop, out) -> None:
    """One client process: `threads` clients until `stop`; its samples to `out`."""
    parts = urlsplit(url)
    samples: list[tuple[float, float, int, int]] = []

    def client() -> None:
        while not stop.is_set():
            started = time.monotonic()  # CLOCK_MONOTONIC: comparable across processes
            try:
                ok = _health_get(parts.hostname, parts.port)
            except OSError:
                ok = False
            samples.append((started, time.monotonic(), 200 if ok else 0, 0))
            stop.wait(think)

    workers = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.put(samples)


def run_health_clients(url: str, count: int, think: float):
    """Start `count` /healthz clients; returns a function that stops them and
    gives their samples."""
    context = multiprocessing.get_context("fork")
    stop, out = context.Event(), context.Queue()
    share, extra = divmod(count, HEALTH_PROCESSES)
    per = [share + (i < extra) for i in range(HEALTH_PROCESSES)]
    processes = [
        context.Process(target=_health_process, args=(url, n, think, stop, out), daemon=True)
        for n in per
        if n
    ]
    for process in processes:
        process.start()

    def finish() -> list[tuple[float, float, int, int]]:
        stop.set()
        samples = []
        for _ in processes:
            samples += out.get(timeout=60)
        for process in processes:
            process.join(timeout=10)
        return samples

    return finish


def measure_health(args, env: dict[str, str], log_dir: Path, expected: int) -> dict:
    empty_tables(args.database_url)
    # No SDP watcher: its slot row would share dpd_indexing_state with the volume's.
    instance = start_instance("health", {**env, "SDP_ETCD_HOST": ""}, args.web_workers, log_dir)
    finish = run_health_clients(instance.url, args.health_clients, args.think)
    try:
        wait_slot(args.database_url, lambda s: s["running"], 60, "start-up indexing to start")
        run_began = time.monotonic()
        wait_slot(args.database_url, lambda s: not s["running"], 3600, "the cold index to end")
        run_ended = time.monotonic()
    finally:
        samples = finish()
        instance.stop()
    busy = [s for s in samples if s[0] >= run_began and s[1] <= run_ended]
    latencies = [1000 * (end - start) for start, end, *_ in busy]
    errors = sum(status != 200 for _, _, status, _ in busy)
    print(
        f"healthz during a {run_ended - run_began:.1f} s cold index, "
        f"{args.health_clients} clients: n={len(busy)} errors={errors} "
        f"p50={statistics.median(latencies):.2f} ms p99={p99_ms(busy):.2f} ms "
        f"max={max(latencies):.1f} ms"
    )
    return {"p99": p99_ms(busy), "errors": errors, "rows": catalogue(args.database_url)[0]}


# --- the two measurements ----------------------------------------------------------


def measure_search(args, env: dict[str, str], log_dir: Path, expected: int) -> dict:
    empty_tables(args.database_url)
    instance = start_instance("leader", env, args.web_workers, log_dir)
    clients = Clients(instance.url, args.clients, args.think)
    try:
        clients.start()
        # Times in this process's monotonic clock, polled every 50 ms.
        wait_slot(args.database_url, lambda s: s["running"], 60, "start-up indexing to start")
        run_began = time.monotonic()
        halfway = None
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            while (state := slot(conn))["running"]:
                if halfway is None and state["processed"] >= expected / 2:
                    halfway = time.monotonic()
                time.sleep(0.05)
        run_ended = time.monotonic()
        if state["step"] != "completed":
            raise SystemExit(f"the cold index ended with step {state['step']!r}")
        idle_began = time.monotonic()
        time.sleep(min(run_ended - run_began, args.idle_seconds))
        idle_ended = time.monotonic()
    finally:
        clients.stop()
        instance.stop()
    busy = clients.between(run_began, run_ended)
    late = clients.between(halfway or run_ended, run_ended)
    idle = clients.between(idle_began, idle_ended)
    rows, distinct = catalogue(args.database_url)
    print(f"cold index: {rows} products ({distinct} distinct) in {run_ended - run_began:.1f} s")
    for name, samples in (("busy", busy), ("busy-late", late), ("idle", idle)):
        print(describe(name, samples))
        for shape, label in enumerate(SHAPE_NAMES):
            print("  " + describe(label, [s for s in samples if s[3] == shape]))
    return {
        "busy_p99": p99_ms(busy),
        "late_p99": p99_ms(late),
        "idle_p99": p99_ms(idle),
        "cold_seconds": run_ended - run_began,
        "rows": rows,
        "errors": sum(status != 200 for _, _, status, _ in busy + idle),
    }


def measure_takeover(args, env: dict[str, str], log_dir: Path, expected: int) -> dict:
    empty_tables(args.database_url)
    env = {**env, "INDEXING_HEARTBEAT_STALE_SECONDS": str(args.stale)}
    # Both instances share the task queue: either worker may take the start-up
    # task that pod-a queues, and whichever does leads.
    instances = {
        "pod-b": start_instance(
            "pod-b", {**env, "INDEXING_ON_STARTUP": "false"}, 1, log_dir, host=True
        ),
        "pod-a": start_instance("pod-a", env, 1, log_dir, host=True),
    }
    try:
        leading = wait_slot(
            args.database_url,
            lambda s: s["running"] and s["processed"] >= expected / 10,
            120,
            "a leader to index a tenth of the volume",
        )["indexed_by"]
        killed_at = time.time()
        instances[leading].kill()
        replacement = f"{leading}-2"
        print(
            f"takeover: leader {leading} SIGKILLed mid-scan, {replacement} starts in its place "
            f"(stale limit {args.stale} s)"
        )
        instances[replacement] = start_instance(replacement, env, 1, log_dir, host=True)
        state = wait_slot(
            args.database_url,
            lambda s: s["indexed_by"] != leading,
            args.stale * 3 + 60,
            "another instance to take the slot",
        )
        takeover = float(state["started_at"]) - killed_at
        done = wait_slot(
            args.database_url,
            lambda s: not s["running"],
            900,
            "the new leader to finish",
            every=0.5,
        )
    finally:
        for instance in instances.values():
            instance.stop()
    rows, distinct = catalogue(args.database_url)
    print(
        f"takeover: {state['indexed_by']} took the slot {takeover:.2f} s after the kill; "
        f"its run ended {done['step']}; catalogue {rows} rows, {distinct} distinct, "
        f"{expected} metadata files"
    )
    return {
        "takeover": takeover,
        "exact": rows == distinct == expected and done["step"] == "completed",
    }


def run_row(url: str, where: str) -> dict:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT id, status, files_added, files_skipped, failure_message FROM "
            f"indexing_indexrun WHERE {where} ORDER BY id DESC LIMIT 1"
        ).fetchone()
    keys = ("id", "status", "added", "skipped", "message")
    return dict(zip(keys, row, strict=True)) if row else {}


def measure_recovery(args, env: dict[str, str], log_dir: Path, expected: int) -> dict:
    """SIGKILL -> restart on this machine, then SIGTERM -> restart, default settings."""
    empty_tables(args.database_url)
    instance = start_instance("pod-a", env, 1, log_dir)
    try:
        wait_slot(
            args.database_url,
            lambda s: s["running"] and s["processed"] >= expected / 10,
            300,
            "the start-up run to index a tenth of the volume",
        )
        killed_at = time.time()
        instance.kill()
        instance = start_instance("pod-a", env, 1, log_dir)
        claimed = wait_slot(
            args.database_url,
            lambda s: s["running"] and float(s["started_at"]) > killed_at,
            400,
            "the restarted instance to claim the slot",
        )
        restart_resume = float(claimed["started_at"]) - killed_at
        print(
            f"recovery: SIGKILL of the whole instance mid-run, restarted under the same name: "
            f"new run claimed the slot {restart_resume:.2f} s after the kill "
            f"(stale limit 300 s)"
        )
        wait_slot(
            args.database_url,
            lambda s: s["running"] and s["processed"] >= expected / 2,
            600,
            "the resumed run to reach half the volume",
        )
        signalled = time.monotonic()
        instance.popen.send_signal(signal.SIGTERM)
        instance.popen.wait(timeout=120)
        exited = time.time()
        sigterm_stop = time.monotonic() - signalled
        interrupted = run_row(args.database_url, "status = 'interrupted'")
        with psycopg.connect(args.database_url) as conn:
            state = slot(conn)
        print(
            f"recovery: SIGTERM mid-run: the instance exited after {sigterm_stop:.2f} s; run "
            f"{interrupted.get('id')} {interrupted.get('status')} with {interrupted.get('added')} "
            f"added; slot running={state['running']} step={state['step']}"
        )
        instance = start_instance("pod-a", env, 1, log_dir)
        claimed = wait_slot(
            args.database_url,
            lambda s: s["running"] and float(s["started_at"]) > exited,
            400,
            "the next start to claim the slot",
        )
        sigterm_resume = float(claimed["started_at"]) - exited
        wait_slot(
            args.database_url, lambda s: not s["running"], 900, "the last run to end", every=0.5
        )
        last = run_row(args.database_url, "trigger = 'startup'")
    finally:
        instance.stop()
    rows, distinct = catalogue(args.database_url)
    print(
        f"recovery: the next start claimed the slot {sigterm_resume:.2f} s after the exit; its "
        f"run {last['status']}: added {last['added']}, skipped {last['skipped']}; catalogue "
        f"{rows} rows, {distinct} distinct, {expected} metadata files"
    )
    return {
        "restart_resume": restart_resume,
        "sigterm_stop": sigterm_stop,
        "sigterm_resume": sigterm_resume,
        "exact": rows == distinct == expected
        and last["status"] == "completed"
        and interrupted.get("status") == "interrupted"
        and not state["running"]
        and last["skipped"] >= interrupted["added"],
    }


def main() -> None:
    args = parse_args()
    volume = Path(args.volume)
    if not volume.is_dir():
        raise SystemExit(f"{volume} is not a directory (python bench/make_volume.py ROOT 20000)")
    expected = metadata_files(volume)
    bench_database.ensure_database(args.database_url)
    env = {
        **os.environ,
        "DATABASE_URL": args.database_url,
        "PERSISTENT_STORAGE_PATH": str(volume),
        "INDEXING_SCHEDULE_MINUTES": "0",
        # The bench measures serving, not the anonymous-client throttle.
        "DPD_THROTTLE_ANON_RATE": "",
        "PYTHONUNBUFFERED": "1",
        # Searches of 100 rows, as its figures were taken (the default is 10,000).
        "SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT": "100",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v0"], cwd=ROOT, env=env, check=True
    )
    print(f"volume {volume}: {expected} metadata files; {os.cpu_count()} cores")
    logs = Path(tempfile.mkdtemp(prefix="bench-indexing-"))
    print(f"instance logs in {logs}")
    phases = set(args.phases.split(","))
    ratios, figures, exact = [], [], []
    if "search" in phases:
        search = measure_search(args, env, logs, expected)
        ratios.append(f"search_p99_busy_vs_idle={search['busy_p99'] / search['idle_p99']:.2f}")
        figures.append(
            f"search_p99_busy_ms={search['busy_p99']:.1f} search_p99_busy_late_ms="
            f"{search['late_p99']:.1f} search_p99_idle_ms={search['idle_p99']:.1f} "
            f"search_errors={search['errors']} cold_index_s={search['cold_seconds']:.1f}"
        )
        exact.append(search["rows"] == expected)
    if "takeover" in phases:
        takeover = measure_takeover(args, env, logs, expected)
        ratios.append(f"takeover_vs_stale={takeover['takeover'] / args.stale:.3f}")
        figures.append(f"takeover_s={takeover['takeover']:.2f} stale_s={args.stale}")
        exact.append(takeover["exact"])
    if "recovery" in phases:
        recovery = measure_recovery(args, env, logs, expected)
        ratios.append(f"restart_resume_vs_stale={recovery['restart_resume'] / 300:.3f}")
        figures.append(
            f"restart_resume_s={recovery['restart_resume']:.2f} "
            f"sigterm_stop_s={recovery['sigterm_stop']:.2f} "
            f"sigterm_resume_s={recovery['sigterm_resume']:.2f}"
        )
        exact.append(recovery["exact"])
    if "health" in phases:
        health = measure_health(args, env, logs, expected)
        ratios.append(f"healthz_p99_vs_5ms={health['p99'] / 5:.2f}")
        figures.append(
            f"healthz_p99_busy_ms={health['p99']:.2f} healthz_errors={health['errors']} "
            f"health_clients={args.health_clients}"
        )
        exact.append(health["rows"] == expected)
    verdict = f"catalogue_exact={str(all(exact)).lower()} products={expected}"
    print(" ".join([*ratios, *figures, verdict]))


if __name__ == "__main__":
    main()
