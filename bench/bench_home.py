"""The home page's cost on a 100,000-product PostgreSQL catalogue.

Fills the bench database as bench_api.py does (reused when already the right
size), then renders `/` in this process through Django's test client for
three callers: anonymous, a member of one access group (session), and staff
(who sees everything). For each it prints the median and p99 of --requests
renders with the catalogue's figures cached (dpd/home/figures.py: until the
catalogue changes), the median of --cold renders with the cache emptied
first (the first render after a change), the queries per render and the
slowest query's time, and compares with `/status` (what a probe polls; the
page includes its work).

    BENCH_DATABASE_URL=postgres://... .venv/bin/python bench/bench_home.py

The last line is name=value pairs, ratios first: home_vs_status_p50 (the
member's cached median against /status's), cold_vs_cached (the member's),
then each caller's p50/p99 in ms, the member's cold median, the queries per
render and the products.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import bench_api  # noqa: E402  (the catalogue is shared)
import bench_database  # noqa: E402

GROUP = "ska-low-team"  # one of dpd.synthetic's access groups


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bench_database.add_database_url(parser)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=40, help="cached renders per caller")
    parser.add_argument("--cold", type=int, default=5, help="renders with an empty cache")
    return bench_database.parse_args(parser)


def clients() -> dict:
    from django.contrib.auth.models import Group, User
    from django.test import Client

    User.objects.filter(username__in=["bench-member", "bench-staff"]).delete()
    member = User.objects.create_user("bench-member")
    member.groups.add(Group.objects.get_or_create(name=GROUP)[0])
    staff = User.objects.create_user("bench-staff", is_staff=True)
    made = {"anonymous": Client(), "member": Client(), "staff": Client()}
    made["member"].force_login(member)
    made["staff"].force_login(staff)
    return made


def measure(client, path: str, requests: int, cold: bool = False) -> dict:
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(path)  # warm: connection, templates, session (and the figures)
    times = []
    for _ in range(requests):
        if cold:
            cache.clear()
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    if cold:
        cache.clear()
    with CaptureQueriesContext(connection) as captured:
        client.get(path)
    slowest = max(captured.captured_queries, key=lambda q: float(q["time"]))
    times.sort()
    return {
        "p50": statistics.median(times),
        "p99": times[min(len(times) - 1, round(0.99 * (len(times) - 1)))],
        "queries": len(captured.captured_queries),
        "slowest_ms": float(slowest["time"]) * 1000,
        "slowest_sql": slowest["sql"][:120],
    }


def main() -> None:
    args = parse_args()
    os.environ.update(
        {
            "DATABASE_URL": args.database_url,
            "DJANGO_SETTINGS_MODULE": "dpd.settings",
            "DPD_THROTTLE_ANON_RATE": "",
            "LOG_LEVEL": "ERROR",
        }
    )
    bench_database.ensure_database(args.database_url)
    import django

    django.setup()
    from django.test.utils import setup_test_environment

    setup_test_environment()  # the test client's host name is allowed
    bench_api.fill_catalogue(args.products)
    callers = clients()

    status = measure(callers["anonymous"], "/status", args.requests)
    print(f"/status anonymous p50={status['p50']:.1f} ms p99={status['p99']:.1f} ms")
    results = {}
    for name, client in callers.items():
        result = results[name] = measure(client, "/", args.requests)
        print(
            f"/ {name:9s} p50={result['p50']:.1f} ms p99={result['p99']:.1f} ms "
            f"queries={result['queries']} slowest={result['slowest_ms']:.1f} ms "
            f"({result['slowest_sql']}...)"
        )
    cold = measure(callers["member"], "/", args.cold, cold=True)
    print(
        f"/ member, cache emptied p50={cold['p50']:.1f} ms queries={cold['queries']} "
        f"slowest={cold['slowest_ms']:.1f} ms ({cold['slowest_sql']}...)"
    )
    member = results["member"]
    pairs = [
        f"home_vs_status_p50={member['p50'] / status['p50']:.1f}",
        f"cold_vs_cached={cold['p50'] / member['p50']:.1f}",
    ]
    for name, result in results.items():
        pairs += [f"{name}_p50_ms={result['p50']:.1f}", f"{name}_p99_ms={result['p99']:.1f}"]
    pairs += [
        f"member_cold_p50_ms={cold['p50']:.1f}",
        f"member_queries={member['queries']}",
        f"products={args.products}",
    ]
    print(" ".join(pairs))


if __name__ == "__main__":
    main()
