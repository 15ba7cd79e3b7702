"""A DLM database for the benches: the DLM's test schema
(sample_data/dlm/dlm-schema.sql, which DROPS schema dlm first) and N
synthetic data items with metadata in a database of their own, then the
catalogue's mirror of them (dlm_bridge.sync), timed.

Used by bench_api.py --dlm-items N. Items are dated and named like the
volume's synthetic products (the same shapes match both), on the fixture's
four storages; 3 % are DELETED and 2 % EXPIRED (hidden by default).
"""

from __future__ import annotations

import random
import subprocess
import time
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "sample_data" / "dlm" / "dlm-schema.sql"
STORAGES = [f"22222222-0000-4000-8000-00000000000{n}" for n in (1, 2, 3, 4)]


def fill_dlm(url: str, items: int) -> None:
    """The schema and `items` items in the database at `url` (reused when it
    already holds that many)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'dlm' AND tablename = 'data_item'"
        ).fetchone()[0]
        if (
            found
            and conn.execute(
                "SELECT count(*) FROM dlm.data_item"
                " WHERE metadata IS NOT NULL AND item_name LIKE 'eb-syn%'"
            ).fetchone()[0]
            == items
        ):
            print(f"dlm: reusing {items} items")
            return
    started = time.perf_counter()
    subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(SCHEMA_FILE)],
        check=True,
        capture_output=True,
    )
    from dpd.synthetic import PRODUCT_TYPES, render_document

    rng = random.Random(1)
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        columns = (
            "uid, item_name, storage_id, uri, item_type, item_state, expired, deleted, metadata"
        )
        with cursor.copy(f"COPY dlm.data_item ({columns}) FROM STDIN") as copy:
            for index in range(items):
                day = f"{2019 + index % 7}{1 + (index * 5) % 12:02d}{1 + index % 28:02d}"
                execution_block = f"eb-syn{index % 97:02d}-{day}-{index + 500_000:06d}"
                pb = f"pb-syn-{day}-{index + 500_000:06d}"
                product_type, script, pattern = rng.choice(PRODUCT_TYPES)
                paths = [pattern.format(n=n) for n in range(1, rng.randint(3, 9))]
                document = yaml.load(  # libyaml's loader: the pure-Python one took minutes
                    render_document(rng, execution_block, pb, product_type, script, paths),
                    Loader=yaml.CSafeLoader,
                )
                roll = rng.random()
                state = "DELETED" if roll < 0.03 else "EXPIRED" if roll < 0.05 else "READY"
                name = f"{execution_block}/ska-sdp/{pb}"
                uid = uuid.UUID(int=rng.getrandbits(128), version=4)
                document.update(uid=str(uid), item_name=name)
                copy.write_row(
                    (
                        uid,
                        name,
                        STORAGES[index % 4],
                        name,
                        "container",
                        state,
                        state == "EXPIRED",
                        state == "DELETED",
                        _json(document),
                    )
                )
        conn.commit()
        cursor.execute("ANALYZE dlm.data_item")
    print(f"dlm: {items} items in {time.perf_counter() - started:.1f} s")


def _json(document: dict) -> str:
    import json

    return json.dumps(document, default=str)


def mirror() -> dict[str, float]:
    """A first sync of the mirror and a second with nothing changed, timed."""
    from dlm_bridge.sync import sync_items

    figures = {}
    # A mirror left by an earlier run over the same items: the first sync
    # writes nothing (its figure says so: written=0).
    for name in ("first", "unchanged"):
        started = time.perf_counter()
        result = sync_items()
        figures[name] = time.perf_counter() - started
        if result.error:
            raise RuntimeError(f"DLM sync failed: {result.error}")
        print(
            f"dlm sync ({name}): {figures[name]:.1f} s, written={result.written} "
            f"listed={result.items}"
        )
    return figures
