"""Which part of a key:value pair PostgreSQL's trigram index looks up.

A key:value pair is a regular expression over the search text
(dpd.search_text.key_value_pattern), and pg_trgm looks up every trigram it
holds: the key's and the value's. PostgreSQL 15 reads each trigram's whole
posting list, so common trigrams cost most, and a key is a field name, in
nearly every product. One execution block at 1,000,000 products
(`execution_block:eb-scale40-20250921-0333332`, one match) read ~2,300
index pages in 190-215 ms; the trigrams of its serial number alone
(`0333332`) found it among 2,544 candidates in 23 ms.

So the index is given the piece of the pair whose trigrams are cheapest to
read for the fewest candidates: a run of the value's or the key's words
(letters and digits, as pg_trgm splits them, with what lies between them),
or one of each. The regular expression still decides every match, tested on
the candidates only, so the answer is the same whatever piece is chosen; a
bad estimate costs time, never rows.

The estimate comes from a sample of the catalogue's search texts kept per
process (SEARCH_SAMPLE_ROWS of them, read again after SAMPLE_MAX_AGE): a
trigram's share of the sample is what its posting list costs to read, and
the share of texts holding all of a piece's trigrams is how many candidates
it leaves. The sample is read on a thread of its own: a request never waits
for it (until it is there, the pattern goes to the index as before), and it
is not one of a request's statements (docs/api.md, "Request bounds").
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import connections

from dpd import search_text

logger = logging.getLogger(__name__)

# How long a sample is used before it is read again (products come and go).
SAMPLE_MAX_AGE = 3600.0
# How soon a catalogue found too small (or never analysed: reltuples -1) is
# looked at again: a first index may fill it meanwhile.
SMALL_CATALOGUE_MAX_AGE = 300.0
# A catalogue smaller than this gains little (the whole pattern's lists are
# short): no sample, the pattern as it is.
SAMPLE_MIN_PRODUCTS = 20_000
# What rechecking one candidate costs (its search text decompressed and
# matched, ~6 us) against reading the posting list of a trigram every
# product holds (~10-45 ms at 1,000,000 products, measured per trigram
# added to a piece): such a list costs as much as rechecking 1/RECHECK_WEIGHT
# of the catalogue.
RECHECK_WEIGHT = 250.0
# A piece replaces the pattern only when it is estimated this much cheaper.
GAIN = 2.0
# Pieces are runs of up to MAX_RUN trigrams inside one word (up to
# MAX_RUN + 2 characters), from the first MAX_WORDS words of each side, and
# at least MIN_CHARS long: PostgreSQL estimates a LIKE piece's matches by its
# length alone, and for a shorter one (`%est%`: 40,000 of 1,000,000) it
# ANDed the open products' index in (500,000 entries, 64 ms for 15 rows).
MIN_CHARS = 5
MAX_WORDS = 12
MAX_RUN = 6
# The cheapest pieces tried in pairs.
PAIRED = 8
# Pairs held by at most this share of the sample's texts are rare (rare()):
# 2 of 2,000, ~1,000 candidates at 1,000,000 products.
RARE_SHARE = 0.001

# The sample is worked through on a thread of the web process: it lets a
# request thread waiting for the interpreter lock have it every this many
# texts (~1 ms), rather than after Python's 5 ms switch interval each time
# (exact_eb at 100,000 products, 1 client p99: 77-90 ms while each worker
# read its sample, 29 ms without one).
YIELD_EVERY = 4

# pg_trgm's words: letters and digits (not "_"), compared lower-cased.
_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True)
class _Sample:
    size: int  # texts sampled
    taken_at: float
    # Each trigram inside a word of the sample's texts: the texts holding it,
    # as a bit set (bit i: text i). A few thousand trigrams at 1,000,000
    # generated products, ~0.6 MB.
    bits: dict[str, int]

    def holders(self, trigram: str) -> int:
        return self.bits.get(trigram, 0)

    def everyone(self) -> int:
        return (1 << self.size) - 1


_sample: _Sample | None = None
_reading = threading.Lock()


def index_pieces(key: str, value: str) -> list[str] | None:
    """The substrings of the pair (one, or one of the key and one of the
    value) whose LIKE conditions the trigram index should answer in place of
    the pattern's, or None to give it the pattern (no sample yet, or no piece
    clearly cheaper). Each is a substring of the key or value as the search
    text holds them, so a necessary condition of the pair."""
    sample = current_sample()
    if sample is None or not sample.size:
        return None
    key, value = search_text.clean(key), search_text.clean(value)
    runs = sorted(
        (read + _rechecks(sample, holders), read, (piece,), holders)
        for read, piece, holders in _runs(sample, key) + _runs(sample, value)
    )
    if not runs:
        return None
    # Two pieces whose candidates differ (a serial number's trigrams and its
    # instrument's, each in 1 % of the catalogue) can leave few together.
    best = runs[0]
    for i, (_, read, pieces, holders) in enumerate(runs[:PAIRED]):
        for _, other_read, other_pieces, other_holders in runs[i + 1 : PAIRED]:
            both = holders & other_holders
            cost = read + other_read + _rechecks(sample, both)
            if cost < best[0]:
                best = (cost, read + other_read, pieces + other_pieces, both)
    whole = _trigrams(key) | _trigrams(value)
    if best[0] * GAIN > _read(sample, whole) + _rechecks(sample, _holders(sample, whole)):
        return None
    return list(best[2])


def rare(pairs: Sequence[tuple[str, str]]) -> bool:
    """Whether at most RARE_SHARE of the sample's texts hold every trigram of
    the pairs: the trigram index then leaves few candidates, which the full
    query rechecks at once (~1,000 at 1,000,000 products), and the newest
    products are unlikely to fill a page (dpd.search_rows's window read
    2,000 of them in ~4.5 ms to learn that: half of a rare pair's time).
    Should the newest hold them all after all (today's products), the full
    query still rechecks only those few candidates. False without a sample,
    or when the pairs hold no trigram (the index cannot narrow them)."""
    sample = current_sample()
    if sample is None or not sample.size:
        return False
    trigrams = frozenset().union(
        *(_trigrams(search_text.clean(f"{key} {value}")) for key, value in pairs)
    )
    holders = _holders(sample, trigrams).bit_count()
    return bool(trigrams) and holders <= RARE_SHARE * sample.size


def _runs(sample: _Sample, text: str) -> list[tuple[float, str, int]]:
    """(posting lists read, piece, holders) of every run of up to MAX_RUN trigrams inside
    one word of `text`: a piece inside a word adds no padded trigram (pg_trgm
    pads a word's ends only where the LIKE pattern shows them)."""
    runs = []
    for word in _WORD.findall(text)[:MAX_WORDS]:
        lowered = word.lower()
        if len(lowered) != len(word):  # a letter whose lower case is longer
            trigrams = _trigrams(word)
            if len(word) >= MIN_CHARS:
                holders = _holders(sample, trigrams)
                runs.append((_read(sample, trigrams), word, holders))
            continue
        for start in range(len(word) - 2):
            read, holders, seen = 0.0, sample.everyone(), set()
            for end in range(start + 3, min(len(word), start + MAX_RUN + 2) + 1):
                trigram = lowered[end - 3 : end]
                if trigram not in seen:  # a list is read once (`00000`)
                    seen.add(trigram)
                    read += _share(sample, trigram)
                    holders &= sample.holders(trigram)
                if end - start >= MIN_CHARS:
                    runs.append((read, word[start:end], holders))
    return runs


def _trigrams(text: str) -> frozenset[str]:
    """pg_trgm's trigrams inside the words of `text` (the padded ones at
    word ends left out: a LIKE piece does not say where words end)."""
    return frozenset(
        word[i : i + 3] for word in _WORD.findall(text.lower()) for i in range(len(word) - 2)
    )


def _share(sample: _Sample, trigram: str) -> float:
    """The share of the catalogue whose posting list for `trigram` is read."""
    return (sample.holders(trigram).bit_count() + 0.5) / sample.size


def _read(sample: _Sample, trigrams: frozenset[str]) -> float:
    return sum(_share(sample, trigram) for trigram in trigrams)


def _holders(sample: _Sample, trigrams: frozenset[str]) -> int:
    every = sample.everyone()
    for trigram in trigrams:
        every &= sample.holders(trigram)
    return every


def _rechecks(sample: _Sample, holders: int) -> float:
    """What rechecking the candidates (texts holding every trigram) costs."""
    return RECHECK_WEIGHT * (holders.bit_count() + 0.5) / sample.size


def current_sample() -> _Sample | None:
    """The sample if it is fresh; else the old one (or None) while a thread
    reads a new one."""
    sample = _sample
    max_age = SAMPLE_MAX_AGE if sample is not None and sample.size else SMALL_CATALOGUE_MAX_AGE
    fresh = sample is not None and time.monotonic() - sample.taken_at < max_age
    if not fresh and settings.SEARCH_SAMPLE_ROWS and _reading.acquire(blocking=False):
        threading.Thread(target=_read_in_thread, name="dpd-search-sample", daemon=True).start()
    return sample


def _read_in_thread() -> None:
    try:
        read_sample()
    except Exception:  # a sample is an optimisation: the pattern still answers
        logger.exception("could not read a sample of the search texts")
    finally:
        connections.close_all()  # this thread's own connection
        _reading.release()


def read_sample() -> None:
    """Read SEARCH_SAMPLE_ROWS search texts, the first product at or after each
    of sample_points' ids, lower-cased, as the sample; an empty one for a
    catalogue under SAMPLE_MIN_PRODUCTS.

    Not at random: every process of the service then makes the same choice
    for the same catalogue. Whole pages sampled at random (TABLESAMPLE SYSTEM)
    over-represented products written together (one day's execution blocks,
    sharing most trigrams), and the choice for one execution block swung
    between 48 and 275 ms from one process start to the next at 1,000,000
    products."""
    rows = settings.SEARCH_SAMPLE_ROWS
    texts: list[str] = []
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = 'dpd_dataproduct'::regclass")
        (products,) = cursor.fetchone()
        if products >= SAMPLE_MIN_PRODUCTS:
            cursor.execute("SELECT min(id), max(id) FROM dpd_dataproduct")
            low, high = cursor.fetchone()
            cursor.execute(
                "SELECT DISTINCT ON (p.id) p.search_text"
                " FROM unnest(%s::bigint[]) AS g(start)"
                " CROSS JOIN LATERAL (SELECT id, search_text FROM dpd_dataproduct"
                "  WHERE id >= g.start ORDER BY id LIMIT 1) AS p",
                [sample_points(low, high, rows)],
            )
            texts = [text for (text,) in cursor.fetchall()]
    use_sample(texts)


def sample_points(low: int, high: int, rows: int) -> list[int]:
    """`rows` ids from `low` to `high`, one in each of `rows` equal strata, at
    a place in its stratum that moves by the golden ratio from one stratum to
    the next. Evenly spaced ids would follow any period of the catalogue's
    (products written in a repeating order): at 1,000,000 generated products,
    every 500th id met only 21 of the 84 observing days, and a day's
    execution blocks, 1 in 84 of the catalogue, looked absent from it."""
    step = max(1.0, (high - low + 1) / rows)
    points = []
    for i in range(rows):
        place = low + int((i + (i * _GOLDEN) % 1.0) * step)
        if place > high:
            break
        points.append(place)
    return points


_GOLDEN = (5**0.5 - 1) / 2


def use_sample(texts: list[str]) -> None:
    """Estimate with these search texts from now on (read_sample's; tests
    give their own). Each text's trigrams are listed once here, ~0.3 ms a
    text, so a request only looks its trigrams up."""
    global _sample
    holding: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        for trigram in _trigrams(text):
            holding.setdefault(trigram, []).append(i)
        if i % YIELD_EVERY == 0:
            time.sleep(0)  # hand the interpreter to a request waiting for it
    bits = {}
    for trigram, indexes in holding.items():
        packed = bytearray(len(texts) // 8 + 1)
        for i in indexes:
            packed[i >> 3] |= 1 << (i & 7)
        bits[trigram] = int.from_bytes(packed, "little")
    _sample = _Sample(len(texts), time.monotonic(), bits)


def forget_sample() -> None:
    """Drop the sample (tests; a catalogue replaced under a running process)."""
    global _sample
    _sample = None
