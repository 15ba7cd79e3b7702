"""Time the indexer against its baselines on one volume.

    DATABASE_URL=postgres://... python bench/bench_index.py ROOT [--repeat 3] [--yes]

Phases, each repeated and reported as a median:
- parse-only: one process walks ROOT, reads and CSafeLoader-parses every
  metadata file (the work a naive single-process indexer cannot avoid);
- cold index: index_volume() into the configured database, DataProduct emptied
  first (TRUNCATE on PostgreSQL), as `manage.py reindex` runs it (bulk load:
  search indexes built after the load; --background: kept throughout, as the
  service's background runs do, with their number of parse processes);
- settle (not in the ratios): VACUUM (ANALYZE) of the loaded table on PostgreSQL;
- unchanged re-index: index_volume() again, nothing changed;
- bare walk+stat: os.scandir over the tree, one stat per metadata file.
With the parse-only and cold phases goes the CPU the whole machine spent
on them (every process: the parse processes, PostgreSQL's backends building
indexes, the kernel): a cold index can take no less than its CPU over the
cores, and `cold_least_vs_parse` is that least time against parse-only, the
best ratio this machine allows the indexer's work as it is.
The last line is `cold_vs_parse=R1 reindex_vs_walk=R2 cold_least_vs_parse=R3
products=N cold_cpu_s= cold_parse_processes_cpu_s= parse_cpu_s= cores=`
(targets: R1 <= 1.0, R2 <= 1.5).
It works on any volume of metadata files; it EMPTIES the DataProduct table
of the configured database (--yes when it holds rows).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dpd.settings")

import django

django.setup()

import bench_api  # noqa: E402  (bench/, the script's own folder: the CPU ledger)
import yaml  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.management.color import no_style  # noqa: E402
from django.db import connection  # noqa: E402

from dpd.models import DataProduct  # noqa: E402
from indexing.indexer import index_volume, parallel_workers  # noqa: E402


def metadata_files(root: str, name: str, with_stat: bool):
    """Recursive scandir, symlinked folders not descended (as the indexer)."""
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as listing:
            for entry in listing:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.name == name:
                    if with_stat:
                        entry.stat()
                    yield entry.path


def parse_only(root: str, name: str) -> int:
    count = 0
    for path in metadata_files(root, name, with_stat=False):
        with open(path, "rb") as handle:
            yaml.load(handle.read(), Loader=yaml.CSafeLoader)
        count += 1
    return count


def walk_and_stat(root: str, name: str) -> int:
    return sum(1 for _ in metadata_files(root, name, with_stat=True))


def empty_catalogue() -> None:
    """TRUNCATE on PostgreSQL: a really empty table (a DELETE leaves every row
    and index entry behind until vacuum)."""
    tables = [DataProduct._meta.db_table]
    connection.ops.execute_sql_flush(connection.ops.sql_flush(no_style(), tables))


def settle() -> None:
    """VACUUM (ANALYZE) after the load, untimed in the ratios: what autovacuum
    does within a minute of it, and would otherwise do during whichever
    phase comes next (it took the re-index from 0.28 s to 0.53 s)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"VACUUM (ANALYZE) {connection.ops.quote_name(DataProduct._meta.db_table)}"
            )


def timed(function, *args):
    started = time.perf_counter()
    value = function(*args)
    return time.perf_counter() - started, value


def cpu_seconds() -> dict[str, float]:
    """CPU time so far: the machine's (every process and core, /proc/stat),
    this process's and its ended children's (the parse processes, counted
    once the run's pool has ended)."""
    own = os.times()
    return {
        "machine": bench_api.cpu_ledger(None)["busy"] / 1000,
        "main": own.user + own.system,
        "children": own.children_user + own.children_system,
    }


def spent_since(before: dict[str, float]) -> dict[str, float]:
    now = cpu_seconds()
    return {part: now[part] - before[part] for part in now}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--yes", action="store_true", help="empty a non-empty DataProduct table")
    parser.add_argument(
        "--background",
        action="store_true",
        help="cold index as background runs do it (search indexes kept during the load)",
    )
    args = parser.parse_args()
    root = os.path.abspath(args.root)
    name = settings.METADATA_FILE_NAME
    if not os.path.isdir(root):
        parser.error(f"{root} is not a directory")
    call_command("migrate", verbosity=0)  # a new database, or one from older code
    if DataProduct.objects.exists() and not args.yes:
        parser.error("the DataProduct table is not empty; --yes empties it for the cold index")

    workers = parallel_workers(background=args.background)
    print(f"volume {root}; database {settings.DATABASES['default']['ENGINE']}")
    mode = "background (search indexes kept)" if args.background else "bulk (manage.py reindex)"
    print(f"workers={workers} batch={settings.INDEXING_BATCH_SIZE} cores={os.cpu_count()}")
    print(f"cold index mode: {mode}")
    times: dict[str, list[float]] = {"parse": [], "cold": [], "reindex": [], "walk": []}
    cpu: dict[str, list[float]] = {"parse": [], "cold": [], "workers": [], "main": []}
    products = files = 0
    for run in range(1, args.repeat + 1):
        before = cpu_seconds()
        seconds, files = timed(parse_only, root, name)
        times["parse"].append(seconds)
        cpu["parse"].append(spent_since(before)["machine"])
        empty_catalogue()
        before = cpu_seconds()
        seconds, cold = timed(
            lambda: index_volume(root, workers=workers, bulk_load=not args.background)
        )
        times["cold"].append(seconds)
        spent = spent_since(before)
        cpu["cold"].append(spent["machine"])
        cpu["workers"].append(spent["children"])
        cpu["main"].append(spent["main"])
        settled, _ = timed(settle)
        seconds, again = timed(lambda: index_volume(root, workers=workers))
        times["reindex"].append(seconds)
        seconds, walked = timed(walk_and_stat, root, name)
        times["walk"].append(seconds)
        products = DataProduct.objects.count()
        print(
            f"run {run}: parse-only {times['parse'][-1]:.3f}s ({files} files) | "
            f"cold {times['cold'][-1]:.3f}s ({cold.summary()}) | "
            f"settle {settled:.3f}s | "
            f"re-index {times['reindex'][-1]:.3f}s (skipped={again.files_skipped} "
            f"added={again.files_added} updated={again.files_updated}) | "
            f"walk+stat {times['walk'][-1]:.3f}s ({walked} files) | "
            f"CPU: parse-only {cpu['parse'][-1]:.1f}s, cold {cpu['cold'][-1]:.1f}s (parse "
            f"processes {cpu['workers'][-1]:.1f}s, this process {cpu['main'][-1]:.1f}s, the "
            f"rest: PostgreSQL, the kernel)"
        )
    median = {phase: statistics.median(values) for phase, values in times.items()}
    print(
        f"medians over {args.repeat}: parse-only {median['parse']:.3f}s, "
        f"cold {median['cold']:.3f}s, "
        f"re-index {median['reindex']:.3f}s, walk+stat {median['walk']:.3f}s"
    )
    cores = os.cpu_count() or 1
    cold_cpu, parse_cpu = statistics.median(cpu["cold"]), statistics.median(cpu["parse"])
    workers_cpu, main_cpu = statistics.median(cpu["workers"]), statistics.median(cpu["main"])
    print(
        f"cold index CPU {cold_cpu:.1f}s (all processes: parse processes {workers_cpu:.1f}s, "
        f"this process {main_cpu:.1f}s, PostgreSQL and the kernel "
        f"{cold_cpu - workers_cpu - main_cpu:.1f}s) on {cores} cores: it takes at least "
        f"{cold_cpu / cores:.2f}s, {cold_cpu / cores / median['parse']:.2f} x parse-only"
    )
    print(
        f"cold_vs_parse={median['cold'] / median['parse']:.3f} "
        f"reindex_vs_walk={median['reindex'] / median['walk']:.3f} "
        f"cold_least_vs_parse={cold_cpu / cores / median['parse']:.3f} products={products} "
        f"cold_cpu_s={cold_cpu:.1f} cold_parse_processes_cpu_s={workers_cpu:.1f} "
        f"parse_cpu_s={parse_cpu:.1f} cores={cores}"
    )


if __name__ == "__main__":
    main()
