"""A per-process cache that keeps values as they are.

Django's LocMemCache pickles every value it stores and unpickles it on every
read, so that a reader cannot change what the next reader gets. For the
large values dpd.remembered_counts keeps, that copy was most of a read's
cost: a whole answer of 20 MB took 10 ms to unpickle, on every request that
reused it (and a remembered order of 250,000 ids was copied on every page).
Those values are never changed once stored (bytes; arrays only sliced), so
this cache hands out the stored object itself. Same eviction (least recently
used past MAX_ENTRIES) and expiry as LocMemCache.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.locmem import LocMemCache


class UnpickledLocMemCache(LocMemCache):
    """LocMemCache without the pickled copy: store only values that nobody
    changes after storing them."""

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        with self._lock:
            if self._has_expired(key):
                self._set(key, value, timeout)
                return True
            return False

    def get(self, key, default=None, version=None) -> Any:
        key = self.make_and_validate_key(key, version=version)
        with self._lock:
            if self._has_expired(key):
                self._delete(key)
                return default
            self._cache.move_to_end(key, last=False)
            return self._cache[key]

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None) -> None:
        key = self.make_and_validate_key(key, version=version)
        with self._lock:
            self._set(key, value, timeout)

    def incr(self, key, delta=1, version=None):
        raise NotImplementedError("values here are never changed in place")
