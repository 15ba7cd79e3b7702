"""The PostgreSQL database a bench script runs against: its command-line
option and its creation. Shared by bench_api.py, bench_indexing.py and
explain_search.py, which each EMPTY what they fill, so the database is always
named explicitly (`--database-url` or BENCH_DATABASE_URL)."""

from __future__ import annotations

import argparse
import os
from urllib.parse import urlsplit, urlunsplit


def add_database_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL"),
        help="PostgreSQL database, created when missing (default: $BENCH_DATABASE_URL)",
    )


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """parser.parse_args(), refusing to go on without a database."""
    args = parser.parse_args()
    if not args.database_url:
        parser.error("--database-url (or BENCH_DATABASE_URL) is required")
    return args


def ensure_database(url: str) -> None:
    """Create the database named by `url` when it does not exist."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", [name]).fetchone():
            conn.execute(f'create database "{name}"')
