"""Search at SKA scale: the query shapes users send, on 100,000 and 1,000,000 products.

Fills a throwaway PostgreSQL database with --products synthetic products
(generated metadata in the fixtures' style: several instruments and product
types, half of them in an access group, every fifth a sub-product of its
execution block, a few rare values among the oldest), written through the
indexer's own batch writer (indexing.writer.CopyWriter, a bulk load: GIN
indexes dropped and built once) from documents parsed by the indexer's own
code (dpd.metadata.from_volume_file, DataProduct.fields_from), in
INDEXING_PARALLEL_WORKERS-like processes. No files are written: this is the
search-only catalogue; a database of the right size is reused (drop it after
changing the generator).

Then, against gunicorn as `manage.py runservice` starts it, the p50/p99 and
requests/s of each shape at 1 and 16 clients (threads, a new connection per
request; --requests at 1 client, four times as many at 16, each level capped
at --seconds), with where the machine's CPU went per request (the clients,
the server, the rest: PostgreSQL and the kernel; and idle): at 16 clients on
a small machine the cores are saturated, and the p99 then follows the CPU a
request costs (docs/benchmarks.md, "Where the CPU goes at 16 clients"):

- date_range: /dataproductsearch, a five-year date range;
- exact_eb: one exact execution block (`execution_block:<eb>`, one match);
- rare_kv: a rare key:value (a handful of matches, all old products);
- no_match_kv: a key:value that matches nothing;
- two_kv: two key:value pairs (common values);
- grid_equals: /filterdataproducts, the same equals filter on a metadata
  field (a value half the products hold), page 0 of 100 in the display
  order, with its total;
- grid_sorted: /filterdataproducts, an equals filter on a metadata field,
  sorted on another metadata field (a hidden column: no index), page 200
  of 25;
- grid_sorted_column: the same, sorted on a visible column of the
  dashboard (`context.observer`, from its index: dpd/search_sort.py);
- metadata: /dataproductmetadata of one product by uid;
- status: /status;
- grid_list: the dashboard's first load (empty filter, no paging) at the
  deployed row cap of 10,000, with the bytes of its answer, asked as curl
  does; grid_list_gzip: the same asked as the dashboard's browser does
  (Accept-Encoding: gzip), unpacked by the client.

The first ten run on a server with the row cap of bench_api's shapes (100
rows); grid_list on a second one at the default cap. Targets (issue 24):
p99 at 16 clients <= 50 ms at 100,000 products, <= 100 ms at 1,000,000; the
10,000-row list <= 500 ms at 1,000,000. The last line is name=value pairs,
ratios first: each shape's p99 at 16 clients over its target, then the
figures (with `<shape>_cpu_ms_16`, the busy CPU a request at 16 clients), the
fill time and the database's size per product.

    .venv/bin/python bench/bench_scale.py --database-url postgres://.../bench_scale_1m \\
        --products 1000000

docs/benchmarks.md gives the time and disk each size needs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bench_api  # noqa: E402  (bench/, the script's own folder)
import bench_database  # noqa: E402

BATCH = 2000
RARE_EVERY = 70_000  # index % RARE_EVERY == 0: a 2019 product (index % 7 == 0)
RARE_OBSERVER = "guest_observer_rare"
SUBPRODUCT_EVERY = 5
CONFIGURED_ROOT = "/mnt/data/product"


def names(index: int) -> tuple[str, str, str]:
    """The execution block, processing block and date of product `index`."""
    day = f"{2019 + index % 7}{1 + index % 12:02d}{1 + index % 28:02d}"
    return f"eb-scale{index % 97:02d}-{day}-{index:07d}", f"pb-scale-{day}-{index:07d}", day


def document(index: int) -> tuple[str, str]:
    """(relative metadata path, YAML text) of product `index`; deterministic."""
    from dpd.synthetic import PRODUCT_TYPES, render_document

    rng = random.Random(index)
    execution_block, pb, _ = names(index)
    product_type, script, pattern = rng.choice(PRODUCT_TYPES)
    paths = [pattern.format(n=n) for n in range(1, rng.randint(3, 9))]
    text = render_document(rng, execution_block, pb, product_type, script, paths)
    if index % RARE_EVERY == 0:  # open, so that every caller's search finds it
        text = text.replace("  observer: ", f"  observer: {RARE_OBSERVER} # ", 1)
        text = re.sub(r'\n  access_group: "[^"]*"', "", text)
    if index % SUBPRODUCT_EVERY == 0:
        return f"{execution_block}/ska-sdp/{pb}/ska-data-product.yaml", text
    return f"{execution_block}/ska-data-product.yaml", text


def parse_range(bounds: tuple[int, int]) -> list:
    """Products [low, high) as the indexer's workers hand them to its writer."""
    from dpd.metadata import from_volume_file
    from dpd.models import DataProduct
    from indexing.parsing import JSON_FIELDS, Parsed

    parsed = []
    for index in range(*bounds):
        path, text = document(index)
        data = text.encode()
        product = from_volume_file(
            data, configured_root=CONFIGURED_ROOT, relative_metadata_file=path
        )
        fields = DataProduct.fields_from(product)
        for name in JSON_FIELDS:
            fields[name] = json.dumps(fields[name])
        parsed.append(Parsed(path, 1_700_000_000_000_000_000 + index, len(data), fields=fields))
    return parsed


def fill(products: int, processes: int) -> float | None:
    """The catalogue of `products` products; seconds taken, None when reused."""
    from django.core.management import call_command
    from django.db import connection, connections, transaction

    from dpd.models import DataProduct
    from indexing.writer import CopyWriter

    call_command("migrate", verbosity=0, skip_checks=True)
    if DataProduct.objects.count() == products:
        print(f"catalogue: reusing {products} products")
        return None
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {DataProduct._meta.db_table} CASCADE")
    connections.close_all()  # before the fork
    writer = CopyWriter(bulk_load=True)
    writer.begin()
    ranges = [(low, min(low + BATCH, products)) for low in range(0, products, BATCH)]
    context = multiprocessing.get_context("fork")
    try:
        with context.Pool(processes) as pool:
            for done, batch in enumerate(pool.imap(parse_range, ranges), start=1):
                with transaction.atomic():
                    writer.write(batch)
                if done % 50 == 0:
                    rate = done * BATCH / (time.perf_counter() - started)
                    print(f"  {done * BATCH} products written ({rate:.0f}/s)", flush=True)
    finally:
        writer.finish()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    seconds = time.perf_counter() - started
    print(f"catalogue: {products} products in {seconds:.0f} s")
    return seconds


def database_bytes() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        return cursor.fetchone()[0]


def open_product(index: int) -> tuple[str, str]:
    """(execution block, uid) of the first product from `index` on that
    every caller may see (half of them are in an access group)."""
    from django.db import connection

    with connection.cursor() as cursor:
        while True:
            execution_block = names(index)[0]
            cursor.execute(
                "SELECT uid FROM dpd_dataproduct WHERE execution_block = %s"
                " AND access_group IS NULL",
                [execution_block],
            )
            found = cursor.fetchone()
            if found:
                return execution_block, str(found[0])
            index += 1


# A grid filter on a value half the products hold.
SKA_MID = {"field": "obscore.instrument_name", "operator": "equals", "value": "SKA-Mid"}


def grid_body(sort_field: str | None, *, page: int, size: int) -> dict:
    """A /filterdataproducts page of the SKA_MID filter, sorted on `sort_field`
    ascending (None: the display order)."""
    return {
        "filterModel": {"items": [SKA_MID], "logicOperator": "and"},
        "searchPanelOptions": {"items": []},
        "sortModel": [{"field": sort_field, "sort": "asc"}] if sort_field else [],
        "page": page,
        "pageSize": size,
    }


def shapes(products: int) -> dict[str, tuple[str, str, dict | None]]:
    """(method, path, body) of each shape, for a catalogue of `products`."""
    exact_eb, _ = open_product(products // 3)
    _, uid = open_product(products // 2)
    wide = {"start_date": "2019-01-01", "end_date": "2026-12-31"}
    return {
        "date_range": (
            "POST",
            "/dataproductsearch",
            {"start_date": "2020-01-01", "end_date": "2024-12-31"},
        ),
        "exact_eb": (
            "POST",
            "/dataproductsearch",
            {**wide, "key_value_pairs": [f"execution_block:{exact_eb}"]},
        ),
        "rare_kv": (
            "POST",
            "/dataproductsearch",
            {**wide, "key_value_pairs": [f"context.observer:{RARE_OBSERVER}"]},
        ),
        "no_match_kv": (
            "POST",
            "/dataproductsearch",
            {**wide, "key_value_pairs": ["obscore.target_name:NoSuchTarget"]},
        ),
        "two_kv": (
            "POST",
            "/dataproductsearch",
            {
                **wide,
                "key_value_pairs": [
                    "obscore.instrument_name:SKA-Low",
                    "config.processing_script:imaging",
                ],
            },
        ),
        "grid_equals": ("POST", "/filterdataproducts", grid_body(None, page=0, size=100)),
        "grid_sorted": (
            "POST",
            "/filterdataproducts",
            grid_body("obscore.t_exptime", page=200, size=25),
        ),
        "grid_sorted_column": (
            "POST",
            "/filterdataproducts",
            grid_body("context.observer", page=200, size=25),
        ),
        "metadata": ("POST", "/dataproductmetadata", {"uid": uid}),
        "status": ("GET", "/status", None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--requests", type=int, default=500, help="per shape at 1 client")
    parser.add_argument("--list-requests", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=60, help="cap per shape and level")
    parser.add_argument("--shapes", default="", help="comma-separated subset of the shapes")
    parser.add_argument(
        "--link-mbit",
        type=float,
        default=100.0,
        help="the grid list again, each client reading no faster than this link",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="also print EXPLAIN (ANALYZE, BUFFERS) of every query each POST shape runs",
    )
    args = parser.parse_args()
    if not args.database_url:
        raise SystemExit("give --database-url or BENCH_DATABASE_URL (PostgreSQL)")
    bench_database.ensure_database(args.database_url)
    volume = Path("/tmp/dpd-bench-scale-volume")
    volume.mkdir(exist_ok=True)
    env = bench_api.server_env(args.database_url, volume)
    # This process (the fill, --explain) at the shapes' cap; the servers get theirs.
    os.environ.update(
        {**env, "SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT": bench_api.SHAPES_ROW_CAP}
    )
    import django

    django.setup()
    fill_seconds = fill(args.products, args.processes)
    size = database_bytes()
    print(f"database: {size / 2**30:.2f} GiB, {size / args.products:.0f} bytes per product")
    selected = shapes(args.products)
    if args.shapes:
        wanted = set(args.shapes.split(","))
        selected = {name: shape for name, shape in selected.items() if name in wanted}
    sql_ms = explain_shapes(selected) if args.explain else {}
    from django.db import connections

    connections.close_all()

    target = 50 if args.products <= 100_000 else 100
    results: dict[tuple[str, int], dict] = {}
    capped = {**env, "SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT": bench_api.SHAPES_ROW_CAP}
    server, url = bench_api.start_gunicorn(capped, args.workers)
    try:
        for name, (method, path, body) in selected.items():
            status, answer = bench_api.request(url, method, path, body)
            rows = len(json.loads(answer)) if path == "/dataproductsearch" else "-"
            print(f"{name}: status {status}, rows {rows}, {len(answer)} bytes")
            measure_levels(
                results,
                name,
                url,
                path,
                body,
                args.requests,
                args.seconds,
                server.pid,
                method=method,
            )
    finally:
        bench_api.stop_server(server)
    grid = None
    if not args.shapes or "grid_list" in args.shapes:
        server, url = bench_api.start_gunicorn(env, args.workers)
        try:
            path, body = bench_api.GRID_LIST
            status, answer = bench_api.request(url, "POST", path, body)
            grid = {"kib": len(answer) / 1024, "rows": len(json.loads(answer))}
            print(f"grid_list: status {status}, {grid['rows']} rows, {grid['kib']:.0f} KiB")
            # As curl asks, then as the dashboard's browser does (gzip); on
            # this machine's loopback, then each client on a link of its own.
            browser, link = bench_api.BROWSER_HEADERS, args.link_mbit
            for name, headers, mbit in (
                ("grid_list", None, 0.0),
                ("grid_list_gzip", browser, 0.0),
                (f"grid_list_{link:g}mbit", None, link),
                (f"grid_list_gzip_{link:g}mbit", browser, link),
            ):
                measure_levels(
                    results,
                    name,
                    url,
                    path,
                    body,
                    args.list_requests,
                    args.seconds,
                    server.pid,
                    headers=headers,
                    link_mbit=mbit,
                )
            grid["gzip_kib"] = bench_api.kept_gzip_bytes(url, path, body) / 1024
            print(f"grid_list_gzip: {grid['gzip_kib']:.0f} KiB as sent")
        finally:
            bench_api.stop_server(server)

    ratios, figures = [], []
    for (name, clients), result in results.items():
        if clients != 16:
            continue
        limit = 500 if name.startswith("grid_list") else target
        ratios.append(f"{name}_p99_vs_{limit}ms={result['p99_ms'] / limit:.2f}")
        figures.append(f"{name}_p99_ms_16={result['p99_ms']:.1f}")
        figures.append(f"{name}_rps_16={result['rps']:.0f}")
        figures.append(f"{name}_cpu_ms_16={result['cpu_ms_per_request']['busy']:.2f}")
    if grid is not None:
        figures.append(f"grid_list_kib={grid['kib']:.0f}")
        figures.append(f"grid_list_gzip_kib={grid['gzip_kib']:.0f}")
    figures += [f"{name}_sql_ms={ms:.2f}" for name, ms in sql_ms.items()]
    fill_figure = "reused" if fill_seconds is None else f"{fill_seconds:.0f}"
    print(
        " ".join(
            [
                *ratios,
                f"products={args.products}",
                *figures,
                f"fill_s={fill_figure}",
                f"database_gib={size / 2**30:.2f}",
                f"bytes_per_product={size / args.products:.0f}",
            ]
        )
    )


def explain_shapes(selected: dict[str, tuple[str, str, dict | None]]) -> dict[str, float]:
    """Print the plan of every query each POST shape runs (bench/explain_search.py
    captures them through Django's handler); the summed median execution time
    of each shape's queries."""
    import re

    import explain_search
    from django.test.utils import setup_test_environment

    setup_test_environment()  # the test client's host name is allowed
    summary = {}
    for name, (method, path, body) in selected.items():
        if method != "POST":
            continue
        explain_search.view_queries(path, body)  # fills the per-process caches
        status, queries = explain_search.view_queries(path, body)
        print(f"\n##### {name}: POST {path} {json.dumps(body)} -> {status}")
        total = 0.0
        for number, sql in enumerate(queries, 1):
            plan, median = explain_search.explain(sql, 3)
            total += median
            scan = " (SEQUENTIAL SCAN)" if re.search(r"Seq Scan on dpd_dataproduct", plan) else ""
            print(f"--- query {number}/{len(queries)}{scan}: median {median:.2f} ms\n{sql}\n{plan}")
        summary[name] = total
    return summary


def measure_levels(
    results: dict[tuple[str, int], dict],
    name: str,
    url: str,
    path: str,
    body: dict | None,
    requests: int,
    seconds: float,
    server_pid: int,
    **options,
) -> None:
    """One shape at 1 client (`requests` requests) and at 16 (four times as
    many), each capped at `seconds`, into results[(name, clients)]."""
    for clients in (1, 16):
        total = requests * (1 if clients == 1 else 4)
        result = bench_api.measure_shape(
            url, path, body, clients, total, seconds, server_pid=server_pid, **options
        )
        results[(name, clients)] = result
        _print(name, clients, result)


def _print(name: str, clients: int, result: dict) -> None:
    print(
        f"  {name:12s} clients={clients:2d} n={result['n']:5d} errors={result['errors']} "
        f"p50={result['p50_ms']:.1f} ms p99={result['p99_ms']:.1f} ms "
        f"rps={result['rps']:.1f} steal={result['steal_ms']:.0f} ms",
        flush=True,
    )
    print(f"  {'':12s} {bench_api.cpu_line(result)}", flush=True)


if __name__ == "__main__":
    main()
