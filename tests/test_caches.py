"""The per-process stores of whole answers and orders (dpd/caches.py) keep
values without a pickled copy per read, within the same bounds as Django's
LocMemCache: what bounds a web process's memory (settings.CACHES)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.cache import caches


def test_the_answers_store_keeps_at_most_four_answers_the_least_recently_read_dropped():
    answers = caches["answers"]
    for n in range(4):
        answers.set(f"answer-{n}", b"x" * 1000)
    answers.get("answer-0")  # read again: the least recently read is now answer-1

    answers.set("answer-4", b"y" * 1000)

    kept = [n for n in range(5) if answers.get(f"answer-{n}") is not None]
    assert kept == [0, 2, 3, 4]


def test_a_stored_value_is_handed_out_as_stored_until_it_expires():
    orders = caches["orders"]
    with time_machine.travel(dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC), tick=False) as clock:
        value = (b"rows", 3)
        orders.set("order", value, 10)
        assert orders.get("order") is value
        assert not orders.add("order", (b"other", 1))
        clock.shift(11)
        assert orders.get("order") is None
        assert orders.add("order", (b"other", 1))


def test_a_value_cannot_be_changed_in_place():
    caches["answers"].set("count", 1)
    with pytest.raises(NotImplementedError):
        caches["answers"].incr("count")
