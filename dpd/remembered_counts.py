"""Counts (and orders) too slow to run per request, counted by one thread at
a time.

Three users: the total of a capped plain list (X-Total-Count), a page's
`total` (`Remembered.count`), and /status's product counts; and the order of
a page sorted where no index orders (`Remembered.order`), which is read the
same way. `Remembered.marks` keeps where earlier pages were, under the same
rules (dpd.search_marks), and `Remembered.answer` the grid's capped list,
whole.

A list's total is a COUNT(*) of every match. For a date range that is an
index-only scan (17-24 ms for 35,554 matches at 100,000 products); for a
key:value search it rechecks the search text of every candidate the trigram
index gives, which takes seconds for common values. /status counts the
products open to everyone: 55 ms at 100,000 products, on every poll of every
dashboard and probe (bench_scale status, 16 clients: p99 1,015 ms).

A count is reused for FRESH_SECONDS, and while its `version` (what the
caller can cheaply tell about the rows: for `Remembered`, the last change
time and the number of removals) holds.
When it expired, every request thread that noticed used to count again at
once: 16 clients of the same key:value search ran up to 16 such counts
together every 10 s (seconds each), and each stall held every request in
flight (bench_api two_key_values, 16 clients: p99 4.8 s, p50 83 ms).

Now one thread per process counts a given key at a time. The others answer
with the previous count while it does, and wait only when there is none
yet. A count therefore lags the rows by at most its freshness plus one
count, and by one count after a change the version shows; a caller alone
always gets a count taken after the last change its version shows.

Its freshness is FRESH_SECONDS, or FRESH_FACTOR times what the count took
if that is longer: a capped list of two common key:value pairs at 1,000,000
products counts for ~4 s, and counting it again every 10 s had each web
process spend 40 % of a core on it, and one request in each wait 4 s.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
import zlib
from array import array
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from django.core.cache import caches
from django.core.exceptions import EmptyResultSet
from django.db.models import QuerySet, Subquery
from django.utils.connection import ConnectionProxy

from dpd.compiled_rows import CompiledRow, converters_of

T = TypeVar("T")
_UNREAD = object()  # a version not read yet

# Their own stores (settings.CACHES says why).
cache = ConnectionProxy(caches, "counts")
orders = ConnectionProxy(caches, "orders")
answers = ConnectionProxy(caches, "answers")
# How long a count is taken as current, and how long a stale one is kept to
# answer with while it is counted again.
FRESH_SECONDS = 10
FRESH_FACTOR = 10
KEEP_SECONDS = 300
# Counts of different keys run side by side; two keys that share a stripe
# only wait for each other when neither has a previous count.
_STRIPES = [threading.Lock() for _ in range(64)]


def remembered(
    key: str, count: Callable[[], T], *, version: Hashable = None, store: Any = cache
) -> T:
    """count(), reused under `key` in `store` while `version` holds, for
    FRESH_SECONDS or ten times what it took; see the module docstring."""
    entry = store.get(key)
    if _current(entry, version):
        return entry[0]
    lock = _stripe(key)
    if not lock.acquire(blocking=entry is None):
        return entry[0]  # being counted by another thread: the previous count
    try:
        latest = store.get(key)
        if _current(latest, version):
            return latest[0]  # counted while this thread waited
        started = time.time()
        value = count()
        now = time.time()
        fresh = max(FRESH_SECONDS, FRESH_FACTOR * (now - started))
        store.set(key, (value, now, version, fresh), max(KEEP_SECONDS, 2 * fresh))
        return value
    finally:
        lock.release()


class Remembered:
    """The totals, orders and page marks one request reuses, each under the
    statement it stands for, while the catalogue's last change time (and
    `also_changed`'s subquery, the last change of anything else the matches
    depend on: the annotations, for the grid's annotation filter) holds. That
    time is read once per request, in one statement, whichever of them it
    asks: a request's statements are bounded (docs/api.md). `also_changed`
    is a function, not its subquery, so that the statement is compiled once
    per process for each (_version_statement)."""

    def __init__(self, *, also_changed: Callable[[], Subquery] | None = None) -> None:
        self._also_changed = also_changed
        self._version: Any = _UNREAD

    def count(self, products: QuerySet) -> int:
        """products.count(), remembered under the statement it runs (so for
        the same matches, visibility included, whatever the order or page
        asked).

        Why: a page's total is a COUNT(*) of every match, which paging and
        sorting ask again unchanged. For a grid filter that half of 1,000,000
        products pass it reads a quarter of the table's pages (0.56-0.59 s on
        PostgreSQL 15, whose bitmap scans cannot skip all-visible pages):
        every click on "next page" or a column header paid it again.

        An addition or update moves the time (`indexed_at`), and a removal
        the count of removals (dpd.models.CatalogueRemovals), so either shows
        in the next total.
        """
        unordered = products.order_by()
        return self._kept("match-count", unordered, unordered.count, 0, cache)

    def known_count(self, products: QuerySet) -> int | None:
        """count() if it is remembered and current, without counting; the
        version is read only for a statement counted before (a filter with
        few matches is never counted: its page tells its total)."""
        key = _statement_key("match-count", products.order_by())
        entry = None if key is None else cache.get(key)
        if entry is None:
            return None
        return entry[0] if _current(entry, self.version()) else None

    def order(self, products: QuerySet) -> array:
        """The ids of every match in the queryset's order, remembered as
        count() is, under the statement with its ORDER BY (in `orders`: a few
        of them, 8 bytes an id, 2 MB for 250,000 matches).

        Why: a page sorted on a metadata field no index orders (a hidden
        column of the grid) reads and sorts every match, and paging on sorted
        them all again: at 1,000,000 products, 250,000 matches, 2.4 s a page,
        and 16 clients paging together waited ~50 s each. With the order
        remembered, each page is read by its ids, and the total is the
        order's length: the first page pays the sort, the next ones do not.
        An addition, update or removal moves the version, and the next page
        sorts again.
        """

        def read() -> array:
            return array("q", products.values_list("pk", flat=True))

        return self._kept("match-order", products, read, array("q"), orders)

    def marks(self, products: QuerySet) -> PageMarks | None:
        """Where earlier pages of the same statement, order included, were
        (dpd.search_marks); None for a filter that no product can pass."""
        key = _statement_key("page-marks", products)
        return None if key is None else PageMarks(key, self.version())

    def answer(
        self,
        products: QuerySet,
        build: Callable[[], T],
        *,
        keep: Callable[[T], bool],
        also: Hashable = (),
    ) -> T:
        """build(), a whole answer listing `products` (`also`: what else
        shapes it), reused while the version holds, for FRESH_SECONDS, in
        `answers`; only an answer that keep() accepts is kept.

        Why: the dashboard's first load, every visible product at the
        deployed cap of 10,000 rows, is 20 MB of stored row texts, read in
        200 ms at 1,000,000 products, and every dashboard asks the same:
        16 clients opening it waited 6.4 s (p99).

        Unlike a count, an answer is never older than the version: a thread
        that finds it being built after the version moved waits for it. One
        that finds it past FRESH_SECONDS only, its version holding, answers
        with it while another thread builds it again, as for a count: the
        16 requests in flight at each expiry all waited for one read of the
        10,000 rows (~0.3 s; bench_scale grid_list, 1 client p99 190-366
        ms against a p50 of 11-16 ms). The version is read (before the
        answer is built) only for a request whose answer was kept before,
        so one never kept costs no statement more; the first time, an
        answer worth keeping is only marked as such.
        """
        key = _statement_key("answer", products, also)
        if key is None:
            return build()
        entry = answers.get(key)
        if entry is None:
            value = build()
            if keep(value):
                answers.set(key, _WORTH_KEEPING, KEEP_SECONDS)
            return value
        version = self.version()
        if _current(entry, version):
            return entry[0]
        lock = _stripe(key)
        expired_only = entry is not _WORTH_KEEPING and entry[2] == version
        if not lock.acquire(blocking=not expired_only):
            return entry[0]  # being built again by another thread
        try:
            latest = answers.get(key)
            if _current(latest, version):
                return latest[0]  # built while this thread waited
            value = build()
            if keep(value):
                answers.set(key, (value, time.time(), version, FRESH_SECONDS), KEEP_SECONDS)
            return value
        finally:
            lock.release()

    def version(self) -> Hashable:
        """The newest product's time, how many removals there have been, and
        `also_changed`'s time, read once in one statement."""
        if self._version is _UNREAD:
            self._version = _read_version(self._also_changed)
        return self._version

    def _kept(
        self, kind: str, products: QuerySet, compute: Callable[[], T], nothing: T, store: Any
    ) -> T:
        """compute(), remembered under the statement `products` runs while
        the version holds; `nothing` for a filter no product can pass, for
        which Django runs no query."""
        key = _statement_key(kind, products)
        if key is None:
            return nothing
        return remembered(key, compute, version=self.version(), store=store)


def _read_version(also_changed: Callable[[], Subquery] | None) -> tuple | None:
    """Remembered.version(): (indexed_at, removals[, also]) of the newest
    product, or None when there is none."""
    from dpd.models import DataProduct

    using = DataProduct.objects.db
    row = _version_statement(using, also_changed).fetch(using)
    return None if row is None else tuple(row)


@functools.lru_cache(maxsize=8)
def _version_statement(using: str, also_changed: Callable[[], Subquery] | None) -> CompiledRow:
    """The version's statement, compiled once per process (dpd.compiled_rows):
    it never changes, and building and compiling it was ~0.6-0.9 ms of every
    grid request (7-9 ms in the worker at 1,000,000 products), against
    ~0.2 ms to run it."""
    latest = newest_product()
    fields = ["indexed_at", "removals"]
    if also_changed is not None:
        latest = latest.annotate(also=also_changed())
        fields = [*fields, "also"]
    compiler = latest.values_list(*fields)[:1].query.get_compiler(using=using)
    sql, params = compiler.as_sql()
    return CompiledRow(sql, tuple(params), converters_of(compiler))


def newest_product() -> QuerySet:
    """The products newest first (an index probe for the first), with the
    number of removals: where a version's time and count are read."""
    from dpd.models import CatalogueRemovals, DataProduct

    removals = CatalogueRemovals.objects.values("removals")
    return DataProduct.objects.order_by("-indexed_at").annotate(removals=Subquery(removals[:1]))


# A statement keeps at most this many marks, each for at most MARK_SECONDS.
# The version sees every change the service makes (writers set indexed_at,
# the trigger counts removals), so the time is a safety net only, for
# changes made around the service: FRESH_SECONDS had every web thread asking
# a deep page walk to it again together every 10 s (bench_scale
# grid_sorted_column at 100,000 products, 16 clients: p99 2.8 s).
MARKS_KEPT = 64
MARK_SECONDS = KEEP_SECONDS


class PageMarks:
    """Rows that earlier pages of one statement showed, by their position in
    its order: (position, the row's order values), while the version holds
    (any addition, update or removal moves the positions), for at most
    MARK_SECONDS from the page that read the rows."""

    def __init__(self, key: str, version: Hashable) -> None:
        self.key = key  # the statement's, order included
        self._version = version

    def nearest(self, offset: int) -> tuple[int, tuple, float] | None:
        """(position, values, when read) of the last current mark at or
        before `offset`."""
        now = time.time()
        fresh = [
            (position, values, read)
            for position, (values, read) in self._current().items()
            if position <= offset and now - read < MARK_SECONDS
        ]
        return max(fresh, key=lambda mark: mark[0], default=None)

    def add(self, marks: dict[int, tuple], read: float) -> None:
        """Keep `marks` (position: values), read at `read` (when the rows
        their positions were counted on were read)."""
        kept = {**self._current(), **{p: (values, read) for p, values in marks.items()}}
        newest = sorted(kept.items(), key=lambda item: item[1][1])[-MARKS_KEPT:]
        cache.set(self.key, (self._version, dict(newest)), KEEP_SECONDS)

    def _current(self) -> dict[int, tuple[tuple, float]]:
        entry = cache.get(self.key)
        return entry[1] if entry is not None and entry[0] == self._version else {}


# An answer worth keeping that is not kept yet: never current.
_WORTH_KEEPING = (None, 0.0, None, 0.0)


def _statement_key(kind: str, products: QuerySet, also: Hashable = ()) -> str | None:
    """The cache key of what `products`' statement gives (and `also`), or
    None when no product can pass its filter (Django runs no query)."""
    try:
        sql, params = products.query.sql_with_params()
    except EmptyResultSet:
        return None
    digest = hashlib.sha256(repr((products.db, sql, params, also)).encode()).hexdigest()
    return f"dpd:{kind}:{digest}"


def _stripe(key: str) -> threading.Lock:
    return _STRIPES[zlib.crc32(key.encode()) % len(_STRIPES)]


def _current(entry: tuple | None, version: Hashable) -> bool:
    return entry is not None and entry[2] == version and time.time() - entry[1] < entry[3]
