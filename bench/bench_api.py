"""API latency and download throughput on a 100,000-product PostgreSQL catalogue.

Without --url it fills a throwaway PostgreSQL database with synthetic products
(bulk_create of DataProduct.fields_from rows, reused when already the right
size and every derived column is filled: after a migration that adds one, the
first run rebuilds it), writes a 2 GiB product folder under a bench volume, and
serves both with gunicorn (the production server, configured as `manage.py
runservice` starts it: dpd.gunicorn_conf) on 127.0.0.1. It then
measures:

- p50/p99 latency and requests/s of three search shapes (date range only; two
  key:value pairs; a filter-model request with paging) at 1 and 16 concurrent
  clients (threads, one http.client connection per request; 2,500 requests
  per shape at 1 client and 10,000 at 16 by default, bounded by time too),
  with the CPU time the hypervisor stole from this machine
  during each level (/proc/stat; a stolen stall delays every request in
  flight) and where the machine's CPU went, per request: the clients, the
  server's processes, the rest (PostgreSQL, the kernel) and idle;
- the same for the dashboard's first load without paging (a plain list of
  10,000 rows, the default cap; the three shapes above keep the 100-row cap
  their target was set for), with the size of its answer;
- /download throughput of the 2 GiB product as a ratio to
  `tar -cf - DIR | cat > /dev/null` on the same folder (page cache warm for
  both): the medians of --download-repeats of each, alternated;
- growth of the gunicorn workers' RSS (VmRSS) during those downloads (the
  largest);
- the same three search shapes at 16 clients while --busy-downloads
  downloads of the 2 GiB product (curl --limit-rate, 5 MB/s each by
  default) are in flight, for --busy-seconds each: the worst shape's p99
  as a ratio to its idle p99 (target <= 2), the downloads' total rate, and
  the workers' RSS growth with all of them in flight.

- /download of a product of --small-files files of --small-file-bytes each
  (20,000 x 2 KiB) against `tar -cf - DIR | cat > /dev/null`, medians of
  --download-repeats alternated, with curl's time to the first byte, and
  the same bytes but the first asked with `Range: bytes=1-`, which the
  Python path serves (a whole download of many files comes from a GNU tar
  process), and the CPU each kept busy (all processes, and the web worker's
  own): the least time the download can take on this machine's cores;
- the first full download of the 2 GiB product after the server started
  (every file hashed for the archive's manifest) against tar, and a ranged
  download of its second half (`Range: bytes=N-`) as a ratio to half of the
  full download's median time (target <= 0.6).

--downloads-only skips the searches, the grid list and the busy phase.
The 2 GiB folder is deleted afterwards (the small-file product stays in the
bench volume, under /tmp, for the next run). The last line is name=value pairs,
ratios first: download_vs_tar (download throughput / tar throughput),
download_cold_vs_tar (the first download), small_files_vs_tar,
small_files_python_path_vs_tar,
ranged_half_vs_half_full,
search_p99_busy_vs_idle (worst shape), search_p99_ms_16 (worst shape),
search_rps_16 (slowest shape), download_rss_growth_mib, search_p99_busy_ms_16,
busy_downloads (in flight at the end of the busy phase), busy_download_mb_s
(their total rate), busy_rss_growth_mib, and the grid list's
grid_list_p99_ms_16, grid_list_rps_16 and grid_list_kib, then the same three
asked as the dashboard's browser asks (gzip): grid_list_gzip_p99_ms_16,
grid_list_gzip_rps_16 and grid_list_gzip_kib (the bytes sent).

    .venv/bin/python bench/bench_api.py [--url URL] [--database-url postgres://...]

With --url the server is yours: give --download-uid and --download-dir (the
product's folder, for the tar baseline) to measure the download, and
--server-pid to measure RSS; otherwise those figures print as nan.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bench_database  # noqa: E402  (bench/, the script's own folder)

from dpd.web_server import gunicorn_command  # noqa: E402

GIB = 1024**3
MIB = 1024**2
BIG_EB = "eb-benchdownload-20240101-00001"

SHAPES = {
    "date_range": (
        "/dataproductsearch",
        {"start_date": "2020-01-01", "end_date": "2024-12-31"},
    ),
    "two_key_values": (
        "/dataproductsearch",
        {
            "start_date": "2019-01-01",
            "end_date": "2026-12-31",
            "key_value_pairs": [
                "obscore.instrument_name:SKA-Low",
                "config.processing_script:imaging",
            ],
        },
    ),
    "filter_paged": (
        "/filterdataproducts",
        {
            "filterModel": {
                "items": [{"field": "execution_block", "operator": "contains", "value": "syn42"}],
                "logicOperator": "and",
                "quickFilterValues": [],
            },
            "searchPanelOptions": {
                "items": [
                    {"field": "date_created", "operator": "onOrAfter", "value": "2021-01-01"}
                ],
                "logicOperator": "and",
            },
            "sortModel": [{"field": "date_created", "sort": "desc"}],
            "page": 2,
            "pageSize": 25,
        },
    ),
}

# The three shapes' target (p99 <= 50 ms at 16 clients) is for plain lists of
# 100 rows, so their server keeps that cap (the upstream code's default). The
# dashboard's first load without paging is measured on a second server at the
# deployed default cap (10,000 rows), with the bytes of its answer.
SHAPES_ROW_CAP = "100"
GRID_LIST = (
    "/filterdataproducts",
    {"filterModel": {}, "searchPanelOptions": {"items": []}, "sortModel": []},
)
# What the dashboard's browser sends with every call (Chromium's list): the
# answer comes gzipped, and the client's time includes unpacking it.
BROWSER_HEADERS = {"Accept-Encoding": "gzip, deflate, br, zstd"}


def server_env(database_url: str, volume: Path) -> dict[str, str]:
    """The environment of a bench server and of the bench process that fills
    its catalogue: this database and volume, no start-up indexing."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "PERSISTENT_STORAGE_PATH": str(volume),
        "DJANGO_SETTINGS_MODULE": "dpd.settings",
        # The bench measures serving, not the anonymous-client throttle.
        "DPD_THROTTLE_ANON_RATE": "",
        "INDEXING_ON_STARTUP": "false",
        # Not a line for each capped list (10,000s of them), nor for each
        # busy download that curl gives up at the end.
        "LOG_LEVEL": "ERROR",
    }


def measure_grid_list(url: str | None, env: dict[str, str], args: argparse.Namespace) -> dict:
    """GRID_LIST at 1 and 16 clients on a server at the default cap (`url`,
    or one started here), asked as curl does and as the dashboard does
    (BROWSER_HEADERS, under "gzip"); `kib` is one answer's body as curl gets
    it, `gzip_kib` as the browser does, `rows` its length."""
    server = None
    if url is None:
        default_env = {
            k: v for k, v in env.items() if k != "SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT"
        }
        server, url = start_gunicorn(default_env, args.workers)
    try:
        path, body = GRID_LIST
        status, answer = request(url, "POST", path, body)
        figures = {"kib": len(answer) / 1024, "rows": len(json.loads(answer)), "gzip": {}}
        print(f"grid list: status {status}, {figures['rows']} rows, {figures['kib']:.0f} KiB")
        for label, headers, into in (
            ("grid_list", None, figures),
            ("grid_list_gzip", BROWSER_HEADERS, figures["gzip"]),
        ):
            if headers is not None:  # after the plain runs, which had every worker keep it
                figures["gzip_kib"] = kept_gzip_bytes(url, path, body) / 1024
                print(f"grid list: {figures['gzip_kib']:.0f} KiB gzipped")
            kib = figures["kib"] if headers is None else figures["gzip_kib"]
            for clients in (1, 16):
                total = args.list_requests * (1 if clients == 1 else 4)
                result = measure_shape(
                    url, path, body, clients, total, args.seconds, headers=headers
                )
                into[clients] = result
                print(
                    f"search {label:15s} clients={clients:2d} n={result['n']:4d} "
                    f"errors={result['errors']} p50={result['p50_ms']:.1f} ms "
                    f"p99={result['p99_ms']:.1f} ms rps={result['rps']:.1f} "
                    f"MiB/s={result['rps'] * kib / 1024:.0f} "
                    f"steal={result['steal_ms']:.0f} ms"
                )
        return figures
    finally:
        if server is not None:
            stop_server(server)


def stop_server(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="measure this running server instead of starting one")
    bench_database.add_database_url(parser)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--volume", default="/tmp/dpd-bench-api-volume")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="gunicorn workers (2, as `manage.py runservice` starts it; docs/api.md has 2-8)",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=2500,
        help="requests per shape at 1 client, four times as many at 16 (a p99 of 1,600 "
        "requests with 16 in flight was whichever moment the machine stalled)",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="time cap per shape and level")
    parser.add_argument(
        "--list-requests",
        type=int,
        default=250,
        help="the grid list's requests at 1 client, four times as many at 16",
    )
    parser.add_argument("--download-gib", type=float, default=2.0)
    parser.add_argument(
        "--download-repeats", type=int, default=3, help="tar and download, alternated"
    )
    parser.add_argument("--busy-downloads", type=int, default=32)
    parser.add_argument("--busy-rate", default="5M", help="curl --limit-rate of each")
    parser.add_argument(
        "--busy-seconds", type=float, default=20.0, help="per shape, with the downloads running"
    )
    parser.add_argument("--small-files", type=int, default=20_000)
    parser.add_argument("--small-file-bytes", type=int, default=2048)
    parser.add_argument(
        "--downloads-only",
        action="store_true",
        help="skip the searches and the busy phase: the download figures alone",
    )
    parser.add_argument("--download-uid", help="with --url: the product to download")
    parser.add_argument("--download-dir", help="with --url: that product's folder")
    parser.add_argument("--server-pid", type=int, help="with --url: gunicorn master pid")
    parser.add_argument(
        "--dlm-items",
        type=int,
        default=0,
        help="also this many DLM items, in the database --dlm-database-url names (bench_dlm.py)",
    )
    parser.add_argument(
        "--dlm-database-url",
        help="the DLM's database (default: the bench database's name + _dlm); its schema dlm "
        "is DROPPED and refilled",
    )
    parser.add_argument("--no-download", action="store_true", help="searches only")
    args = bench_database.parse_args(parser)
    if args.download_repeats < 1:
        parser.error("--download-repeats must be at least 1")
    return args


# --- the catalogue and the big product -----------------------------------------


def fill_catalogue(products: int) -> None:
    """Synthetic rows exactly as the indexer writes them (fields_from)."""
    import random

    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Q

    from dpd.metadata import from_volume_file
    from dpd.models import DataProduct
    from dpd.synthetic import PRODUCT_TYPES, render_document
    from indexing.writer import has_lz4

    call_command("migrate", verbosity=0, skip_checks=True)
    from dpd.models import DLM_SOURCES

    existing = (
        DataProduct.objects.exclude(execution_block=BIG_EB).exclude(source__in=DLM_SOURCES).count()
    )
    # Rows from before a derived column existed (NULL row_json) are rebuilt.
    stale = DataProduct.objects.filter(Q(row_json__isnull=True) | Q(search_signature__isnull=True))
    if existing == products and not stale.exists():
        print(f"catalogue: reusing {existing} products")
        return
    started = time.perf_counter()
    DataProduct.objects.all().delete()
    with connection.cursor() as cursor:
        if has_lz4(cursor):  # compressed as the indexer writes them
            cursor.execute("SET default_toast_compression = 'lz4'")
    rng = random.Random(0)
    batch = []
    for index in range(products):
        day = f"{2019 + index % 7}{1 + index % 12:02d}{1 + index % 28:02d}"
        execution_block = f"eb-syn{index % 97:02d}-{day}-{index:06d}"
        pb = f"pb-syn-{day}-{index:06d}"
        product_type, script, pattern = rng.choice(PRODUCT_TYPES)
        paths = [pattern.format(n=n) for n in range(1, rng.randint(3, 9))]
        text = render_document(rng, execution_block, pb, product_type, script, paths)
        product = from_volume_file(
            text.encode(),
            configured_root="/mnt/data/product",
            relative_metadata_file=f"{execution_block}/ska-data-product.yaml",
        )
        batch.append(DataProduct(**DataProduct.fields_from(product)))
        if len(batch) == 2000:
            DataProduct.objects.bulk_create(batch)
            batch = []
    DataProduct.objects.bulk_create(batch)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(f"catalogue: {products} products in {time.perf_counter() - started:.1f} s")


def write_big_product(volume: Path, size: float) -> Path:
    """A product folder of `size` GiB: four data files and its metadata."""
    folder = volume / BIG_EB
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "ska-data-product.yaml").write_text(
        f"execution_block: {BIG_EB}\ncontext: {{}}\nconfig: {{}}\nfiles: []\n"
    )
    per_file = int(size * GIB / 4)
    block = os.urandom(MIB)
    for n in range(4):
        path = folder / "data" / f"part-{n}.bin"
        if path.exists() and path.stat().st_size == per_file:
            continue
        with open(path, "wb") as handle:
            for _ in range(per_file // MIB):
                handle.write(block)
            handle.write(block[: per_file % MIB])
    return folder


# --- the server --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(env: dict[str, str], workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    options = ("--timeout", "300", "--log-level", "warning")
    argv = gunicorn_command(f"127.0.0.1:{port}", workers, *options)
    server = subprocess.Popen(argv, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            status, _ = request(url, "GET", "/status")
            if status == 200:
                return server, url
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("gunicorn did not answer /status")


def request(
    url: str,
    method: str,
    path: str,
    body: dict | None = None,
    headers: dict[str, str] | None = None,
    link_mbit: float = 0.0,
) -> tuple[int, bytes]:
    """One request on a new connection; a gzipped answer is unpacked, as
    browsers and `requests` do. With `link_mbit`, the answer is read no
    faster than a link of that many Mbit/s would bring it."""
    status, answer, encoding = _exchange(url, method, path, body, headers, link_mbit)
    return status, gzip.decompress(answer) if encoding == "gzip" else answer


def wire_bytes(url: str, path: str, body: dict, headers: dict[str, str]) -> int:
    """The length of the POST's answer as sent, before any unpacking."""
    return len(_exchange(url, "POST", path, body, headers)[1])


def kept_gzip_bytes(url: str, path: str, body: dict) -> int:
    """The length of a kept list as a browser gets it: the gzip made once
    for it (dpd.compression.KeptBody). A worker that has not kept the list
    yet, or is reading it again, compresses its own answer on the fly at a
    lower level (~40 % larger), so the least of a few answers is the kept
    one; one answer alone gave 2,355 or 3,316 KiB by which worker took it."""
    return min(wire_bytes(url, path, body, BROWSER_HEADERS) for _ in range(4))


def _exchange(url, method, path, body, headers, link_mbit=0.0) -> tuple[int, bytes, str | None]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=60)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        sent = {"Content-Type": "application/json"} if payload else {}
        started = time.perf_counter()
        conn.request(method, parts.path.rstrip("/") + path, payload, {**sent, **(headers or {})})
        response = conn.getresponse()
        encoding = response.getheader("Content-Encoding")
        if link_mbit <= 0:
            return response.status, response.read(), encoding
        # Unpacked as it arrives, as browsers do, in the time the link leaves.
        unpack = zlib.decompressobj(wbits=31) if encoding == "gzip" else None
        chunks, received = [], 0
        while chunk := response.read(65536):
            received += len(chunk)
            chunks.append(unpack.decompress(chunk) if unpack else chunk)
            due = started + received * 8 / (link_mbit * 1e6)
            time.sleep(max(0.0, due - time.perf_counter()))
        return response.status, b"".join(chunks), None
    finally:
        conn.close()


# --- measurements ------------------------------------------------------------------


def measure_shape(
    url: str,
    path: str,
    body: dict | None,
    clients: int,
    total: int,
    cap: float,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    link_mbit: float = 0.0,
    server_pid: int | None = None,
) -> dict:
    """Latencies of `total` requests from `clients` threads, stopped at `cap` s,
    and where the machine's CPU went meanwhile (`cpu_ms_per_request`)."""
    latencies: list[float] = []
    errors: list[int] = []
    lock = threading.Lock()
    remaining = [total]
    deadline = 0.0

    def client() -> None:
        while time.monotonic() < deadline:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            started = time.perf_counter()
            try:
                status, _ = request(url, method, path, body, headers, link_mbit)
            except OSError:  # timed out (60 s) or refused: an error, and its time
                status = 0
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if status != 200:
                    errors.append(status)

    for _ in range(3):  # warm caches and connections
        request(url, method, path, body, headers)
    # The cap counts from here: warm-up requests of seconds each used to
    # spend it all, leaving no latency to report.
    deadline = time.monotonic() + cap
    stolen = steal_ms()
    spent = cpu_ledger(server_pid)
    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    stolen = steal_ms() - stolen
    spent = {part: ms - spent[part] for part, ms in cpu_ledger(server_pid).items()}
    latencies.sort()
    ended = len(latencies)
    if not latencies:  # not one request ended
        latencies = [math.nan]
    return {
        "n": ended,
        "errors": len(errors),
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "rps": len(latencies) / wall,
        "steal_ms": stolen,
        "cpu_ms_per_request": {part: ms / max(1, ended) for part, ms in cpu_split(spent).items()},
    }


def cpu_line(result: dict) -> str:
    """Where a level's CPU went, per request: on a machine whose cores the
    clients, the server and PostgreSQL share, a level with no idle time left
    is bound by the CPU a request costs, and 16 clients then wait
    16 x (that cost) / (cores) on average, whatever the code's latency alone."""
    cpu = result["cpu_ms_per_request"]
    return (
        f"CPU ms a request: clients {cpu['clients']:.2f}, server {cpu['server']:.2f}, "
        f"rest {cpu['rest']:.2f} (PostgreSQL, kernel), idle {cpu['idle']:.2f}"
    )


def cpu_ledger(server_pid: int | None) -> dict[str, float]:
    """CPU ms spent so far: by the whole machine (busy and idle, all CPUs,
    /proc/stat), by this process (the clients) and by the server's processes
    (the gunicorn master and its workers; nan without `server_pid`)."""
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as stat:
        user, nice, system, idle, iowait, irq, softirq = map(int, stat.readline().split()[1:8])
    server = math.nan
    if server_pid is not None:
        server = 0.0
        for pid in (server_pid, *worker_pids(server_pid)):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # a worker that ended meanwhile
                continue
            server += (int(fields[11]) + int(fields[12])) * tick_ms  # utime, stime
    own = os.times()
    return {
        "busy": (user + nice + system + irq + softirq) * tick_ms,  # not stolen time
        "idle": (idle + iowait) * tick_ms,
        "clients": (own.user + own.system) * 1000,
        "server": server,
    }


def cpu_split(spent: dict[str, float]) -> dict[str, float]:
    """`spent` (a difference of two ledgers) as the machine's busy time, and
    that as the clients', the server's and the rest's (PostgreSQL, the
    kernel's loopback); and idle."""
    return {
        "busy": spent["busy"],
        "clients": spent["clients"],
        "server": spent["server"],
        "rest": spent["busy"] - spent["clients"] - spent["server"],
        "idle": spent["idle"],
    }


def steal_ms() -> float:
    """CPU time the hypervisor gave to other guests so far (all CPUs, Linux's
    /proc/stat, 10 ms ticks); nan where it is not reported.

    On a virtual machine every process stops while it is stolen, so a stall
    of 10-20 ms delays all 16 requests in flight at once: with 1,600
    requests, one such stall was the p99 (docs/api.md); with 10,000, it
    takes several. Printed with each level so that a run can be read for it.
    """
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
        return int(fields[8]) * 1000 / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    if not children.exists():
        return []
    return [int(pid) for pid in children.read_text().split()]


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tar_seconds(folder: Path) -> float:
    command = f"tar -C {folder.parent} -cf - {folder.name} | cat > /dev/null"
    subprocess.run(command, shell=True, check=True)  # warm the page cache
    started = time.perf_counter()
    subprocess.run(command, shell=True, check=True)
    return time.perf_counter() - started


def download_seconds(url: str, uid: str, master: int | None) -> tuple[float, int, float]:
    """(seconds, bytes, worker RSS growth MiB) for one /download of `uid`."""
    pids = worker_pids(master) if master else []
    before = {pid: rss_kib(pid) for pid in pids}
    peak = dict(before)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in pids:
                peak[pid] = max(peak[pid], rss_kib(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    try:
        received = _fetch_download(url, uid)
    finally:
        done.set()
    elapsed = time.perf_counter() - started
    sampler.join()
    growth = max((peak[pid] - before[pid] for pid in pids), default=float("nan"))
    return elapsed, received, growth / 1024 if pids else float("nan")


def curl_download(url: str, uid: str, *options: str) -> list[str]:
    """curl's argv for one /download of `uid` to /dev/null, printing its size."""
    body = json.dumps({"uid": uid})
    return [
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        *options,
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        body,
        url.rstrip("/") + "/download",
    ]


def measure_busy(url: str, uid: str, master: int | None, args: argparse.Namespace) -> dict:
    """The three shapes at 16 clients while args.busy_downloads rate-limited
    downloads are in flight (each curl gives up when the phase is over)."""
    phase = len(SHAPES) * args.busy_seconds + 10
    options = ("--limit-rate", args.busy_rate, "--max-time", str(phase))
    downloads = [
        subprocess.Popen(
            curl_download(url, uid, *options),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # each ends with "Operation timed out"
            text=True,
        )
        for _ in range(args.busy_downloads)
    ]
    started = time.perf_counter()
    pids = worker_pids(master) if master else []
    time.sleep(3)  # every download past its first burst
    before = {pid: rss_kib(pid) for pid in pids}
    results = {}
    for name, (path, body) in SHAPES.items():
        results[name] = measure_shape(url, path, body, 16, 10**9, args.busy_seconds)
    in_flight = sum(download.poll() is None for download in downloads)
    growth = max((rss_kib(pid) - before[pid] for pid in pids), default=float("nan"))
    received = 0
    for download in downloads:
        output, _ = download.communicate()
        received += int(float(output or 0))
    elapsed = time.perf_counter() - started
    return {
        "shapes": results,
        "in_flight": in_flight,
        "mb_s": received / 1e6 / elapsed,
        "rss_growth_mib": growth / 1024 if pids else float("nan"),
    }


def _fetch_download(url: str, uid: str) -> int:
    """Read the whole /download response; bytes received. curl when installed:
    http.client's chunked decoding (pure Python) would be the bottleneck and
    measure the client, not the server."""
    body = json.dumps({"uid": uid})
    if shutil.which("curl"):
        argv = curl_download(url, uid, "--fail")
        result = subprocess.run(argv, capture_output=True, text=True, check=True)
        return int(float(result.stdout))
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=300)
    try:
        conn.request(
            "POST",
            parts.path.rstrip("/") + "/download",
            body.encode(),
            {"Content-Type": "application/json"},
        )
        response = conn.getresponse()
        if response.status != 200:
            raise SystemExit(f"/download answered {response.status}: {response.read()[:200]!r}")
        received = 0
        while chunk := response.read(4 * MIB):
            received += len(chunk)
        return received
    finally:
        conn.close()


SMALL_EB = "eb-benchsmall-20240101-00001"


def write_small_product(volume: Path, files: int, size: int) -> Path:
    """A product folder of `files` files of `size` bytes (1,000 to a folder)."""
    folder = volume / SMALL_EB
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "ska-data-product.yaml").write_text(
        f"execution_block: {SMALL_EB}\ncontext: {{}}\nconfig: {{}}\nfiles: []\n"
    )
    payload = os.urandom(size)
    for n in range(files):
        sub = folder / "data" / f"d{n // 1000:03d}"
        path = sub / f"f{n:06d}.bin"
        if not path.exists():
            sub.mkdir(exist_ok=True)
            path.write_bytes(payload)
    return folder


def archive_size(url: str, uid: str) -> int:
    """The archive's length, from the Content-Range of a one-byte range."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=300)
    try:
        conn.request(
            "POST",
            parts.path.rstrip("/") + "/download",
            json.dumps({"uid": uid}).encode(),
            {"Content-Type": "application/json", "Range": "bytes=0-0"},
        )
        response = conn.getresponse()
        response.read()
        return int(response.getheader("Content-Range").rsplit("/", 1)[1])
    finally:
        conn.close()


def curl_seconds(url: str, uid: str, *options: str) -> tuple[float, int, float]:
    """(seconds, bytes, seconds to the first byte) of one curl /download."""
    argv = curl_download(url, uid, "--fail", *options)
    argv[argv.index("%{size_download}")] = "%{size_download} %{time_starttransfer}"
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - started
    size, first_byte = result.stdout.split()
    return elapsed, int(float(size)), float(first_byte)


def measure_small_files(
    url: str, volume: Path, args: argparse.Namespace, master: int | None = None
) -> tuple[float, float]:
    """/download of SMALL_EB against `tar -cf - DIR | cat` (medians, alternated):
    the speed ratio of the whole download (a tar process serves it) and of the
    same bytes from the Python path."""
    from dpd.services import product_ingest_folder

    folder = write_small_product(volume, args.small_files, args.small_file_bytes)
    uid = str(product_ingest_folder(SMALL_EB).uid)
    tars, downloads, firsts, pythons = [], [], [], []
    tar_cpu, download_cpu, worker_cpu = [], [], []  # busy ms during each
    for _ in range(args.download_repeats):
        busy = cpu_ledger(None)["busy"]
        tars.append(tar_seconds(folder))
        middle = cpu_ledger(master)
        seconds, received, first_byte = curl_seconds(url, uid)
        after = cpu_ledger(master)
        tar_cpu.append((middle["busy"] - busy) / 2)  # tar_seconds runs it twice: warm, timed
        download_cpu.append(after["busy"] - middle["busy"])
        # The gunicorn processes' own time (the walk, the checks of tar's
        # output and the digests: Python, one GIL), not their tar child's.
        worker_cpu.append(after["server"] - middle["server"])
        downloads.append(seconds)
        firsts.append(first_byte)
        # `Range: bytes=1-` is the same bytes but the first from the Python path
        # (dpd.tar_stream): a range never comes from the tar process
        # (dpd.tar_process), which serves whole archives. Both in one run.
        python_seconds, _, _ = curl_seconds(url, uid, "-H", "Range: bytes=1-")
        pythons.append(python_seconds)
        print(
            f"small files: tar | cat {tars[-1]:.2f} s; download {received / MIB:.0f} MiB "
            f"in {seconds:.2f} s, first byte after {first_byte:.2f} s; "
            f"Python path {python_seconds:.2f} s"
        )
    ratio = statistics.median(tars) / statistics.median(downloads)
    python_ratio = statistics.median(tars) / statistics.median(pythons)
    print(
        f"small files ({args.small_files} x {args.small_file_bytes} B): download/tar "
        f"speed {ratio:.2f} (median tar {statistics.median(tars):.2f} s, download "
        f"{statistics.median(downloads):.2f} s, first byte {statistics.median(firsts):.2f} s); "
        f"Python path {python_ratio:.2f} ({statistics.median(pythons):.2f} s)"
    )
    # Every process's CPU counts: the walk, the tar process, the worker's
    # checks and digests and curl's receive share the machine's cores, so
    # the download can take no less than its CPU over the cores.
    cores = os.cpu_count() or 1
    least = statistics.median(download_cpu) / 1000 / cores
    print(
        f"small files CPU (all processes, ms): tar | cat {statistics.median(tar_cpu):.0f}, "
        f"download {statistics.median(download_cpu):.0f} (of which the web worker "
        f"{statistics.median(worker_cpu):.0f}); on {cores} cores the download "
        f"takes at least {least:.2f} s, a ratio to tar of at most "
        f"{statistics.median(tars) / least:.2f}"
    )
    return ratio, python_ratio


def measure_ranged_half(url: str, uid: str, full_seconds: float) -> float:
    """A ranged download of the second half of the archive, in seconds as a
    ratio to half of a full download's (median) seconds."""
    half = archive_size(url, uid) // 2
    seconds, received, _ = curl_seconds(url, uid, "-H", f"Range: bytes={half}-")
    ratio = seconds / (full_seconds / 2)
    print(
        f"ranged second half: {received / MIB:.0f} MiB in {seconds:.2f} s "
        f"= {ratio:.2f} x half the full download's {full_seconds:.2f} s"
    )
    return ratio


# --- main --------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    server = None
    big_folder: Path | None = None
    uid = args.download_uid
    master = args.server_pid
    url = args.url
    try:
        if url is None:
            bench_database.ensure_database(args.database_url)
            volume = Path(args.volume)
            volume.mkdir(parents=True, exist_ok=True)
            env = {
                **server_env(args.database_url, volume),
                "SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT": SHAPES_ROW_CAP,
            }
            if args.dlm_items:
                dlm_url = args.dlm_database_url or args.database_url.rstrip("/") + "_dlm"
                bench_database.ensure_database(dlm_url)
                env |= {
                    "SKA_DATAPRODUCT_DLM_INTERFACE_ENABLED": "true",
                    "DLM_DATABASE_URL": dlm_url,
                }
            os.environ.update(env)
            import django

            django.setup()
            if args.downloads_only:
                from django.core.management import call_command

                call_command("migrate", verbosity=0, skip_checks=True)
            else:
                fill_catalogue(args.products)
            if args.dlm_items:
                import bench_dlm

                bench_dlm.fill_dlm(dlm_url, args.dlm_items)
                dlm_sync = bench_dlm.mirror()
            from django.db import connections

            connections.close_all()
            server, url = start_gunicorn(env, args.workers)
            master = server.pid
            print(f"server: gunicorn as runservice starts it, {args.workers} workers, {url}")
        elif args.download_dir:
            big_folder = Path(args.download_dir)

        results: dict[tuple[str, int], dict] = {}
        nan = {"p99_ms": float("nan"), "rps": float("nan"), "kib": float("nan")}
        for clients in () if args.downloads_only else (1, 16):
            for name, (path, body) in SHAPES.items():
                total = args.requests if clients == 1 else 4 * args.requests
                result = measure_shape(
                    url, path, body, clients, total, args.seconds, server_pid=master
                )
                results[(name, clients)] = result
                print(
                    f"search {name:15s} clients={clients:2d} n={result['n']:4d} "
                    f"errors={result['errors']} p50={result['p50_ms']:.1f} ms "
                    f"p99={result['p99_ms']:.1f} ms rps={result['rps']:.1f} "
                    f"steal={result['steal_ms']:.0f} ms; {cpu_line(result)}"
                )

        if args.downloads_only:
            grid_list = {16: nan, "kib": float("nan"), "gzip": {16: nan}, "gzip_kib": float("nan")}
        else:
            grid_list = measure_grid_list(args.url, env if args.url is None else {}, args)
        small_ratio = small_python_ratio = float("nan")
        if args.url is None and args.small_files:
            small_ratio, small_python_ratio = measure_small_files(url, volume, args, master)

        if args.url is None and not args.no_download:
            # Written after the searches: 2 GiB of dirty pages that the kernel
            # may start writing back stall a search run that follows it.
            big_folder = write_big_product(volume, args.download_gib)
            from dpd.services import product_ingest_folder

            uid = str(product_ingest_folder(BIG_EB).uid)

        ratio = growth = cold_ratio = ranged_ratio = float("nan")
        if uid and big_folder is not None:
            # Alternated, and compared by their medians: one ~1 s transfer of
            # each alone was at the mercy of a single stall (0.72 to 1.43).
            size = sum(p.stat().st_size for p in big_folder.rglob("*") if p.is_file())
            tars, downloads, growths = [], [], []
            for _ in range(args.download_repeats):
                tar = tar_seconds(big_folder)
                rate = size / MIB / tar
                print(f"tar | cat: {size / MIB:.0f} MiB in {tar:.2f} s = {rate:.0f} MiB/s")
                seconds, received, grown = download_seconds(url, uid, master)
                print(
                    f"download: {received / MIB:.0f} MiB in {seconds:.2f} s = "
                    f"{received / MIB / seconds:.0f} MiB/s; worker RSS growth {grown:.1f} MiB"
                )
                tars.append(tar)
                downloads.append(seconds)
                growths.append(grown)
            ratio = statistics.median(tars) / statistics.median(downloads)
            # The first download after the server started hashes every file
            # for its manifest; later ones may find the digests remembered by
            # the worker that serves them (dpd.checksums).
            cold_ratio = statistics.median(tars) / downloads[0]
            growth = max(growths)
            ranged_ratio = measure_ranged_half(url, uid, statistics.median(downloads))
        else:
            print("download: skipped (with --url give --download-uid and --download-dir)")

        busy_ratio = busy_p99 = busy_mb_s = busy_growth = float("nan")
        in_flight = 0
        if (
            uid
            and shutil.which("curl")
            and args.busy_downloads
            and not args.downloads_only
            and not args.no_download
        ):
            busy = measure_busy(url, uid, master, args)
            for name, result in busy["shapes"].items():
                print(
                    f"search {name:15s} clients=16 with {args.busy_downloads} downloads "
                    f"n={result['n']:4d} errors={result['errors']} "
                    f"p50={result['p50_ms']:.1f} ms p99={result['p99_ms']:.1f} ms "
                    f"rps={result['rps']:.1f} steal={result['steal_ms']:.0f} ms"
                )
            busy_ratio = max(
                result["p99_ms"] / results[(name, 16)]["p99_ms"]
                for name, result in busy["shapes"].items()
            )
            busy_p99 = max(result["p99_ms"] for result in busy["shapes"].values())
            in_flight, busy_mb_s = busy["in_flight"], busy["mb_s"]
            busy_growth = busy["rss_growth_mib"]
            print(
                f"downloads: {in_flight} of {args.busy_downloads} still in flight at the end, "
                f"{busy_mb_s:.0f} MB/s in total; worker RSS growth {busy_growth:.1f} MiB"
            )

        at_16 = [results[(name, 16)] for name in SHAPES if (name, 16) in results] or [nan]
        p99_16 = max(result["p99_ms"] for result in at_16)
        rps_16 = min(result["rps"] for result in at_16)
        dlm_figures = ""
        if args.dlm_items and args.url is None:
            dlm_figures = (
                f" dlm_items={args.dlm_items} dlm_sync_first_s={dlm_sync['first']:.1f}"
                f" dlm_sync_unchanged_s={dlm_sync['unchanged']:.2f}"
            )
        print(
            f"download_vs_tar={ratio:.2f} download_cold_vs_tar={cold_ratio:.2f} "
            f"small_files_vs_tar={small_ratio:.2f} "
            f"small_files_python_path_vs_tar={small_python_ratio:.2f} "
            f"ranged_half_vs_half_full={ranged_ratio:.2f} "
            f"search_p99_busy_vs_idle={busy_ratio:.2f} "
            f"search_p99_ms_16={p99_16:.1f} search_rps_16={rps_16:.1f} "
            f"download_rss_growth_mib={growth:.1f} search_p99_busy_ms_16={busy_p99:.1f} "
            f"busy_downloads={in_flight} busy_download_mb_s={busy_mb_s:.0f} "
            f"busy_rss_growth_mib={busy_growth:.1f} "
            f"grid_list_p99_ms_16={grid_list[16]['p99_ms']:.1f} "
            f"grid_list_rps_16={grid_list[16]['rps']:.1f} grid_list_kib={grid_list['kib']:.0f} "
            f"grid_list_gzip_p99_ms_16={grid_list['gzip'][16]['p99_ms']:.1f} "
            f"grid_list_gzip_rps_16={grid_list['gzip'][16]['rps']:.1f} "
            f"grid_list_gzip_kib={grid_list['gzip_kib']:.0f}" + dlm_figures
        )
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        if big_folder is not None and args.url is None:
            shutil.rmtree(big_folder, ignore_errors=True)
            from dpd.models import DataProduct

            DataProduct.objects.filter(execution_block=BIG_EB).delete()


if __name__ == "__main__":
    main()
