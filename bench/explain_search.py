"""EXPLAIN (ANALYZE, BUFFERS) of the SQL the search views really run, at 100,000 products.

Fills (or reuses) the synthetic catalogue of bench/bench_api.py in the given
PostgreSQL database, sends the three request shapes bench_api.py measures
(date range only; two key:value pairs with substring semantics; a filter-model
request with paging) through Django's request handler, captures every query
each view runs (CaptureQueriesContext), and prints the plan of each query that
reads the products table, with its execution time. No sequential scan of the
products table (and so of its metadata JSON) may appear in what every request
runs: the last line counts the plans that have one, and the summed median
execution time of each shape's queries.

    .venv/bin/python bench/explain_search.py \
        --database-url postgres://USER@HOST:PORT/DBNAME [--products 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import bench_api  # noqa: E402  (the catalogue and the request shapes are shared)
import bench_database  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bench_database.add_database_url(parser)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5, help="EXPLAIN ANALYZE runs per query")
    return bench_database.parse_args(parser)


def view_queries(path: str, body: dict) -> tuple[int, list[str]]:
    """(status, SQL of every query touching the products table) for one request."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    with CaptureQueriesContext(connection) as captured:
        response = client.post(path, json.dumps(body), content_type="application/json")
    queries = [q["sql"] for q in captured.captured_queries if "dpd_dataproduct" in q["sql"]]
    return response.status_code, queries


def explain(sql: str, runs: int) -> tuple[str, float]:
    """The plan of one run and the median execution time of `runs` runs.

    Some reads travel with settings in one simple query (the key:value
    window; a page with its total, read by a cursor): the statement that reads
    the table is explained after the settings sent before it.
    """
    from django.db import connection, transaction

    statements = sql.split("; ")
    (at,) = [n for n, statement in enumerate(statements) if "dpd_dataproduct" in statement]
    read = re.sub(r"^DECLARE \w+ NO SCROLL CURSOR FOR ", "", statements[at])
    times, plan = [], ""
    with transaction.atomic(), connection.cursor() as cursor:
        for setting in statements[:at]:
            cursor.execute(setting)
        for _ in range(runs):
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {read}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
            times.append(float(re.search(r"Execution Time: ([0-9.]+) ms", plan).group(1)))
        transaction.set_rollback(True)  # the settings end here
    return plan, statistics.median(times)


def main() -> None:
    args = parse_args()
    os.environ["DATABASE_URL"] = args.database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "dpd.settings"
    os.environ["DPD_THROTTLE_ANON_RATE"] = ""
    # The shapes' plans at the cap bench_api runs them with.
    os.environ["SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT"] = bench_api.SHAPES_ROW_CAP
    bench_database.ensure_database(args.database_url)
    import django

    django.setup()
    from django.test.utils import setup_test_environment

    setup_test_environment()  # the test client's host name is allowed
    bench_api.fill_catalogue(args.products)

    seq_scans, summary = 0, []
    for name, (path, body) in bench_api.SHAPES.items():
        # The first request also fills the per-process caches (the grid's field
        # catalogue, recomputed once per catalogue change); the second is what
        # every following request runs.
        _, cold = view_queries(path, body)
        status, queries = view_queries(path, body)
        print(f"\n##### {name}: POST {path} {json.dumps(body)}\n##### answered {status}")
        labelled = [("every request", sql) for sql in queries] + [
            ("first request of a process only (cached field catalogue)", sql)
            for sql in cold
            if sql not in queries
        ]
        total = 0.0
        for number, (when, sql) in enumerate(labelled, 1):
            plan, median = explain(sql, args.runs)
            scans = bool(re.search(r"Seq Scan on dpd_dataproduct", plan))
            if when == "every request":
                total += median
                seq_scans += scans
            print(f"\n--- query {number}/{len(labelled)}, {when}\n{sql}\n\n{plan}")
            print(f"--- median execution time over {args.runs} runs: {median:.2f} ms")
        summary.append(f"{name}_ms={total:.2f}")
    print(
        " ".join(
            [f"plans_with_seq_scan={seq_scans}", f"products={args.products}", *summary],
        )
    )


if __name__ == "__main__":
    main()
