"""A key:value pair's trigram lookup on its cheapest piece (dpd/search_pieces.py):
which piece is chosen from a sample of search texts, that the answers are
the whole pattern's whatever the pair, and that the sample is read on a
thread of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from dpd import search_pieces
from dpd.search_text import RS, US
from tests.conftest import UPSTREAM_ROOT, catalogue_sample
from tests.test_api_search import WIDE

POSTGRESQL_ONLY = pytest.mark.skipif(
    not django_settings.IS_POSTGRESQL, reason="the trigram index is PostgreSQL's"
)


def catalogue_like(products: int = 1000) -> list[str]:
    """Search texts shaped as the bench's: every product has the same field
    names, one execution block each (same prefix and date, its own serial),
    and half of them SKA-Mid."""
    return [
        f"{RS}execution_block{US}eb-scale40-20250921-{i:07d}"
        f"{RS}obscore.instrument_name{US}{'SKA-Mid' if i % 2 else 'SKA-Low'}"
        f"{RS}context.observer{US}AIV_person_{i % 7}"
        + (f"{RS}context.rare_field{US}SKA-Low" if i % 100 == 0 else "")
        + RS
        for i in range(products)
    ]


def test_one_execution_block_is_looked_up_by_its_serial_number():
    search_pieces.use_sample(catalogue_like())
    # The key and the prefix and date are in every product: only the serial
    # narrows the candidates, and reading the others' lists is the cost.
    (piece,) = search_pieces.index_pieces("execution_block", "eb-scale40-20250921-0000123")
    assert "123" in piece and piece in "0000123"


def test_a_rare_key_with_a_common_value_is_not_looked_up_by_the_value():
    search_pieces.use_sample(catalogue_like())
    # SKA-Low alone would leave half the catalogue to recheck.
    pieces = search_pieces.index_pieces("rare_field", "SKA-Low")
    assert pieces is None or any("rare" in piece for piece in pieces)


def test_the_whole_pattern_is_kept_when_no_piece_is_clearly_cheaper():
    search_pieces.use_sample(catalogue_like())
    assert search_pieces.index_pieces("no_such_key", "no_such_value") is None
    # Too short for any trigram: nothing the index could look up by itself.
    assert search_pieces.index_pieces("x", "1") is None


def test_no_sample_no_pieces():
    assert search_pieces.index_pieces("execution_block", "eb-scale40-20250921-0000123") is None
    search_pieces.use_sample([])
    assert search_pieces.index_pieces("execution_block", "eb-scale40-20250921-0000123") is None


def test_a_pair_that_almost_no_sampled_text_holds_is_rare():
    search_pieces.use_sample(catalogue_like())
    assert search_pieces.rare([("execution_block", "eb-scale40-20250921-0000123")])
    assert search_pieces.rare([("obscore.target_name", "NoSuchTarget")])
    # Half the catalogue, or 1 %: the newest products may fill a page.
    assert not search_pieces.rare([("obscore.instrument_name", "SKA-Mid")])
    assert not search_pieces.rare([("rare_field", "SKA-Low")])
    # Both pairs common alone, rare together.
    assert search_pieces.rare([("instrument_name", "SKA-Mid"), ("observer", "person_3")]) is False
    assert search_pieces.rare([("execution_block", "0000123"), ("instrument_name", "SKA-Mid")])
    # No trigram: nothing the index could narrow.
    assert not search_pieces.rare([("x", "1")])


def test_without_a_sample_no_pair_is_rare():
    assert not search_pieces.rare([("obscore.target_name", "NoSuchTarget")])


# --- The answers, on the catalogue ------------------------------------------------

# Pairs a script may send, hostile ones included: LIKE's wildcards and escape,
# our separators, a key and a value with no trigram, non-ASCII text.
PAIRS = [
    "execution_block:eb-m001-20221212-12345",
    "execution_block:12345",
    "execution_block:eb-notebook-20240201-54576",
    "context.observer:AIV_person_1",
    "obscore.instrument_name:SKA-Mid",
    "config.processing_script:receive",
    "files.path:TestDataFile1.txt",
    "execution_block:%",
    "execution_block:eb_m001",
    "execution_block:eb-m001%",
    "execution_block:\\",
    "_block:2022",
    "%:12345",
    "block:2024\x1e0201",
    "intent:ünï",
    "notes:",
    "x:1",
    "nosuchkey:nosuchvalue",
]


@pytest.fixture
def sampled_catalogue(indexed_sample, monkeypatch, settings):
    """The sample catalogue's 15 products sampled as read_sample reads them
    (on the test's connection, which sees them), the window off so that every
    search runs its full query, and a piece taken whenever there is one (at
    15 products none is worth it, and any piece must give the same answers)."""
    monkeypatch.setattr(search_pieces, "SAMPLE_MIN_PRODUCTS", 1)
    monkeypatch.setattr(search_pieces, "GAIN", 0.0)
    settings.SEARCH_SAMPLE_ROWS = 2000
    settings.SEARCH_WINDOW_ROWS = 0
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE dpd_dataproduct")
    search_pieces.read_sample()
    assert search_pieces.current_sample().size == 15
    settings.SEARCH_SAMPLE_ROWS = 0  # no thread when the test drops the sample


def rows_of(pair: str) -> tuple[list[str], list[str]]:
    """The search's answer and the SQL of its statements."""
    body = {**WIDE, "key_value_pairs": [pair]}
    with CaptureQueriesContext(connection) as queries:
        response = APIClient().post("/dataproductsearch", body, format="json")
    assert response.status_code == 200, response.content
    return [row["uid"] for row in response.json()], [q["sql"] for q in queries]


@POSTGRESQL_ONLY
@pytest.mark.usefixtures("sampled_catalogue")
def test_the_pieces_give_the_whole_patterns_answers(monkeypatch):
    looked_up = []
    for pair in PAIRS:
        with_pieces, sql = rows_of(pair)
        if any(" LIKE " in statement for statement in sql):
            looked_up.append(pair)
        sample = search_pieces.current_sample()
        search_pieces.forget_sample()
        whole, sql = rows_of(pair)
        assert not any(" LIKE " in statement for statement in sql)
        monkeypatch.setattr(search_pieces, "_sample", sample)
        assert with_pieces == whole, pair
    # Every pair with a word of three letters or digits.
    assert looked_up == [pair for pair in PAIRS if pair != "x:1"]


@POSTGRESQL_ONLY
def test_the_sample_is_read_on_a_thread_of_its_own(
    transactional_db, tmp_path, monkeypatch, settings
):
    """The first search does not wait for it (the whole pattern answers); the
    thread reads the committed catalogue on its own connection, closes it,
    and the next search uses the sample."""
    settings.BASE_DIR = tmp_path
    settings.PERSISTENT_STORAGE_PATH = UPSTREAM_ROOT
    catalogue_sample(tmp_path)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE dpd_dataproduct")
    monkeypatch.setattr(search_pieces, "SAMPLE_MIN_PRODUCTS", 1)
    monkeypatch.setattr(search_pieces, "GAIN", 0.0)
    settings.SEARCH_SAMPLE_ROWS = 2000
    pair = ("execution_block", "eb-m001-20221212-12345")
    assert search_pieces.index_pieces(*pair) is None
    (reader,) = [t for t in threading.enumerate() if t.name == "dpd-search-sample"]
    reader.join(timeout=30)
    assert not reader.is_alive()
    assert search_pieces.current_sample().size == 15
    assert search_pieces.index_pieces(*pair) is not None
    # One thread at a time, and none while the sample is fresh.
    assert not [t for t in threading.enumerate() if t.name == "dpd-search-sample"]


@POSTGRESQL_ONLY
@pytest.mark.usefixtures("indexed_sample")
def test_every_process_reads_the_same_sample(monkeypatch, settings):
    """Each gunicorn worker reads its own sample: read at random, two workers
    chose different pieces for one execution block (48 against 275 ms at
    1,000,000 products). Now it is the same in every process, and its texts
    are those of the products at or after sample_points' ids."""
    monkeypatch.setattr(search_pieces, "SAMPLE_MIN_PRODUCTS", 1)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE dpd_dataproduct")
        cursor.execute("SELECT id, search_text FROM dpd_dataproduct ORDER BY id")
        texts = dict(cursor.fetchall())
    settings.SEARCH_SAMPLE_ROWS = 5
    search_pieces.read_sample()
    first = search_pieces.current_sample()
    search_pieces.forget_sample()
    search_pieces.read_sample()
    again = search_pieces.current_sample()
    assert first.size == again.size == 5
    assert first.bits == again.bits
    points = search_pieces.sample_points(min(texts), max(texts), 5)
    search_pieces.use_sample([texts[point] for point in points])
    assert search_pieces.current_sample().bits == first.bits


def test_the_sample_does_not_follow_a_period_of_the_catalogue():
    """Generated products cycle through 84 observing days; every 500th of
    1,000,000 ids met only 21 of them, and a common day's execution blocks
    looked absent from the catalogue (its piece then cost 265 ms, not 8)."""
    points = search_pieces.sample_points(1, 1_000_000, 2000)
    assert len(points) == len(set(points)) == 2000
    assert points == sorted(points) and points[0] >= 1 and points[-1] <= 1_000_000
    days = {(point - 1) % 84 for point in points}
    assert len(days) == 84
    # Every tenth of the ids holds a tenth of the sample.
    per_tenth = [sum(1 for p in points if k * 100_000 < p <= (k + 1) * 100_000) for k in range(10)]
    assert all(195 <= n <= 205 for n in per_tenth), per_tenth
    # A catalogue smaller than the sample: each product once.
    assert search_pieces.sample_points(10, 14, 2000) == [10, 11, 12, 13, 14]


def test_a_catalogue_too_small_to_sample_is_looked_at_again_within_minutes(monkeypatch, settings):
    """A first index fills an empty catalogue in minutes: its searches must
    not wait the hour a real sample is kept to get theirs."""
    reads = []

    def read_in_thread() -> None:
        reads.append(1)
        search_pieces._reading.release()

    def reads_after(seconds: float) -> int:
        monkeypatch.setattr(time, "monotonic", lambda: now + seconds)
        search_pieces.current_sample()
        for thread in threading.enumerate():
            if thread.name == "dpd-search-sample":
                thread.join(timeout=10)
        return len(reads)

    monkeypatch.setattr(search_pieces, "_read_in_thread", read_in_thread)
    settings.SEARCH_SAMPLE_ROWS = 2000
    now = time.monotonic()
    search_pieces.use_sample([])  # under SAMPLE_MIN_PRODUCTS
    assert reads_after(0) == 0
    assert reads_after(search_pieces.SMALL_CATALOGUE_MAX_AGE + 1) == 1
    # A real sample is kept for the hour.
    monkeypatch.setattr(time, "monotonic", lambda: now)
    search_pieces.use_sample(catalogue_like())
    assert reads_after(search_pieces.SMALL_CATALOGUE_MAX_AGE + 1) == 1
    assert reads_after(search_pieces.SAMPLE_MAX_AGE + 1) == 2


def test_a_sample_too_large_for_memory_stops_start_up_naming_the_variable():
    """Each trigram of the sample keeps a bit per text: a million texts would
    take gigabytes in every web process."""
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=django_settings.BASE_DIR,
        env={**os.environ, "SEARCH_SAMPLE_ROWS": "1000000"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "SEARCH_SAMPLE_ROWS=1000000 must be at most 10000" in done.stderr


WINDOW_SQL = "SELECT w.id, w.search_text, w.row_json FROM"  # the window's first read


@POSTGRESQL_ONLY
@pytest.mark.usefixtures("sampled_catalogue")
@pytest.mark.parametrize(
    "pair",
    ["execution_block:eb-m004-20191031-12345", "nosuchkey:nosuchvalue"],
    ids=["one-match", "no-match"],
)
def test_a_rare_pair_skips_the_newest_products_window_with_the_same_answer(
    pair, settings, monkeypatch
):
    """The window read the 2,000 newest products to learn that a rare pair
    could not fill a page from them (~4.5 ms of its ~10 at 1,000,000)."""
    monkeypatch.setattr(search_pieces, "RARE_SHARE", 0.15)  # 2 of the 15 texts
    settings.SEARCH_WINDOW_ROWS = 2000
    settings.SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT = 100  # a list the window can hold
    rare, sql = rows_of(pair)
    assert not any(WINDOW_SQL in statement for statement in sql)

    sample = search_pieces.current_sample()
    search_pieces.forget_sample()
    windowed, sql = rows_of(pair)
    monkeypatch.setattr(search_pieces, "_sample", sample)

    assert any(WINDOW_SQL in statement for statement in sql)
    assert rare == windowed
    assert len(rare) == (pair != "nosuchkey:nosuchvalue")


@POSTGRESQL_ONLY
@pytest.mark.usefixtures("sampled_catalogue")
def test_a_common_pair_still_reads_the_window(settings, monkeypatch):
    monkeypatch.setattr(search_pieces, "RARE_SHARE", 0.15)
    settings.SEARCH_WINDOW_ROWS = 2000
    settings.SKA_DATAPRODUCT_API_POSTGRESQL_QUERY_SIZE_LIMIT = 100
    _, sql = rows_of("obscore.instrument_name:SKA")
    assert any(WINDOW_SQL in statement for statement in sql)
