"""The total of a capped plain list (X-Total-Count), counted once at a time.

The total is a COUNT(*) of every match. For a date range that is an
index-only scan (17-24 ms for 35,554 matches at 100,000 products); for a
key:value search it rechecks the search text of every candidate the trigram
index gives, which takes seconds for common values. It is reused for
FRESH_SECONDS by the same request (the dashboard reloads the same list).
When it expired, every request thread that noticed used to count again at
once: 16 clients of the same key:value search ran up to 16 such counts
together every 10 s, and each stall held every request in flight (bench_api
two_key_values, 16 clients: p99 4.8 s, p50 83 ms).

Now one thread per process counts a given request at a time. The others
answer with the previous total while it does, and wait only when there is
none yet. A total therefore lags the catalogue by at most FRESH_SECONDS
plus one count; the caller never reports fewer than the rows it sends.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable

from django.core.cache import cache

# How long a total is taken as current, and how long a stale one is kept to
# answer with while it is counted again.
FRESH_SECONDS = 10
KEEP_SECONDS = 300
# Counts of different requests run side by side; two requests that share a
# stripe only wait for each other when neither has a previous total.
_STRIPES = [threading.Lock() for _ in range(64)]


def remembered_count(key: str, count: Callable[[], int]) -> int:
    """count(), reused for FRESH_SECONDS under `key`; see the module docstring."""
    entry = cache.get(key)
    if entry is not None and time.time() - entry[1] < FRESH_SECONDS:
        return entry[0]
    lock = _STRIPES[zlib.crc32(key.encode()) % len(_STRIPES)]
    if not lock.acquire(blocking=entry is None):
        return entry[0]  # being counted by another thread: the previous total
    try:
        current = cache.get(key)
        if current is not None and time.time() - current[1] < FRESH_SECONDS:
            return current[0]  # counted while this thread waited
        total = count()
        cache.set(key, (total, time.time()), KEEP_SECONDS)
        return total
    finally:
        lock.release()
