"""How fast a flow's state in etcd reaches /dataproductsearch.

Fills a PostgreSQL catalogue of synthetic products as bench_api.py does
(reused when already the right size), starts Debian's etcd on free 127.0.0.1
ports with a temp data dir, writes --flows flows into it (four per processing
block, one processing block per execution block of the newest products, every
block FINISHED so that no placeholder is made), and starts the flow watcher
(`manage.py sdpwatch`) and gunicorn as `runservice` would. Once the watcher's
snapshot is written, it changes the state of one flow of the newest open product
--changes times, and after each change polls /dataproductsearch (a key:value
search for that execution block) until the row shows the new state: the time
from the put to that answer is the flow's propagation time.

The flows stay in the catalogue's rows afterwards, so that bench_api.py run
on the same database next measures search with flows present.

    .venv/bin/python bench/bench_flows.py --database-url postgres://...

The last line is name=value pairs: flow_propagation_p50_ms,
flow_propagation_max_ms (targets: <= 250 and <= 1,000), then the snapshot's
time and the counts.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bench_database  # noqa: E402  (bench/, the script's own folder)

STATES = ["FLOWING", "FAILED", "PENDING", "INITIALISED", "WAITING"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bench_database.add_database_url(parser)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--flows", type=int, default=20_000)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    return bench_database.parse_args(parser)


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dpd.settings")
    import django

    django.setup()


def load_flows(server, ebs: list[str]) -> tuple[str, int]:
    """One FINISHED PB per execution block, four COMPLETED flows each, in
    transactions of 96 puts; returns the measured flow's key and the revision."""
    client = server.client
    puts = []
    for n, eb in enumerate(ebs):
        pb = f"pb-bench-{n:06d}"
        puts.append((f"/pb/{pb}", {"pb_id": pb, "eb_id": eb, "script": {"name": "bench"}}))
        puts.append((f"/pb/{pb}/state", {"status": "FINISHED"}))
        for kind, name in (
            ("data-product", "vis"),
            ("data-product-persist", "persist"),
            ("data-queue", "metrics"),
            ("data-product", "cal"),
        ):
            key = f"/flow/{pb}:{kind}:{name}"
            sink = {"kind": kind, "data_dir": f"/mnt/data/product/{eb}/ska-sdp/{pb}"}
            puts.append((key, {"key": {"pb_id": pb, "kind": kind, "name": name}, "sink": sink}))
            puts.append((f"{key}/state", {"status": "COMPLETED", "last_updated": time.time()}))
    revision = 0
    for start in range(0, len(puts), 96):
        operations = [
            client.transactions.put(key, json.dumps(value))
            for key, value in puts[start : start + 96]
        ]
        client.transaction(compare=[], success=operations, failure=[])
        revision = max(revision, server.revision())
    return "pb-bench-000000:data-product:vis", revision


def wait_for_snapshot(flows: int, revision: int, timeout: float = 600) -> float:
    from dpd.models import SdpWatcherState

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        state = SdpWatcherState.objects.filter(pk=1).first()
        if state and state.flows == flows and (state.revision or 0) >= revision:
            return time.monotonic() - started
        time.sleep(0.2)
    raise SystemExit("the watcher did not write the snapshot in time")


def shows(url: str, eb: str, key: str, status: str) -> bool:
    from bench_api import request

    code, body = request(
        url, "POST", "/dataproductsearch", {"key_value_pairs": [f"execution_block:{eb}"]}
    )
    if code != 200:
        raise SystemExit(f"/dataproductsearch answered {code}")
    for row in json.loads(body):
        if row.get("execution_block") == eb:
            return {"sdp_flow": key, "sdp_flow_status": status} in row.get("sdp_flows", [])
    return False


def main() -> None:
    args = parse_args()
    bench_database.ensure_database(args.database_url)
    setup_django(args.database_url)
    from bench_api import fill_catalogue, start_gunicorn

    from dpd.models import DataProduct, SdpWatcherState
    from tests.etcd_server import EtcdServer

    fill_catalogue(args.products)
    products = DataProduct.objects.exclude(source="sdp").in_display_order()
    # The measured flow is on the newest open product: /dataproductsearch
    # shows open products only.
    measured = products.filter(access_group__isnull=True).values_list("execution_block", flat=True)[
        0
    ]
    others = products.exclude(execution_block=measured).values_list("execution_block", flat=True)
    ebs = [measured, *others[: args.flows // 4 - 1]]
    server = EtcdServer()
    server.start()
    processes: list[subprocess.Popen] = []
    try:
        key, revision = load_flows(server, ebs)
        flows = 4 * len(ebs)
        env = {
            **os.environ,
            "DATABASE_URL": args.database_url,
            "SDP_ETCD_HOST": "127.0.0.1",
            "SDP_CONFIG_PORT": str(server.port),
            "DPD_THROTTLE_ANON_RATE": "",
            "DPD_INSTANCE_NAME": "bench-flows",
        }
        # A state row of an earlier run would look like this run's snapshot.
        SdpWatcherState.objects.all().delete()
        watcher = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "sdpwatch"], cwd=ROOT, env=env
        )
        processes.append(watcher)
        snapshot_seconds = wait_for_snapshot(flows, revision)
        print(f"snapshot of {flows} flows ({len(ebs)} execution blocks): {snapshot_seconds:.1f} s")
        gunicorn, url = start_gunicorn(env, args.workers)
        processes.append(gunicorn)
        eb = ebs[0]
        latencies = []
        for n in range(args.changes):
            status = STATES[n % len(STATES)]
            put_at = time.perf_counter()
            server.put(f"/flow/{key}/state", {"status": status, "last_updated": time.time()})
            while not shows(url, eb, key, status):
                if time.perf_counter() - put_at > 30:
                    raise SystemExit(f"change {n} did not show within 30 s")
            latencies.append(1000 * (time.perf_counter() - put_at))
            time.sleep(0.1)
        p50 = statistics.median(latencies)
        print(
            f"propagation over {len(latencies)} changes: p50={p50:.1f} ms "
            f"p90={statistics.quantiles(latencies, n=10)[-1]:.1f} ms max={max(latencies):.1f} ms"
        )
        print(
            f"flow_propagation_p50_ms={p50:.1f} flow_propagation_max_ms={max(latencies):.1f} "
            f"snapshot_s={snapshot_seconds:.1f} flows={flows} products={args.products}"
        )
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        server.destroy()


if __name__ == "__main__":
    main()
