"""The derived search representation of a product, and patterns over it.

Search and filter match substrings in field *names* and field *values* of the
flattened row (reference 3.3, 3.6). A JSON document cannot be indexed for
that, so every row carries `search_text`: one record per field, which a single
pg_trgm GIN index serves for every shape of query (key:value substrings,
per-field contains/equals/starts/ends, any-of). Nothing here touches the
database, so indexer worker processes can build it.

Layout (control characters never occur in the content: they are replaced):

    RS name US value   a field of the flattened row (what the grid shows)
    GS name US value   a field inside a list element (key:value search only)
    ...                and a final RS, so every value is followed by RS or GS

Values are `str(value)` of what PyYAML loaded, as upstream compares them
(`str(4)` is `4`, a list is its Python repr, `True` is `True`).
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from dpd.metadata import flatten

RS = "\x1e"  # starts a row field
GS = "\x1d"  # starts a field found inside a list element
US = "\x1f"  # separates a field's name from its value
_SEPARATORS = re.compile("[\x1d\x1e\x1f]")

# Regex fragments: any characters of one name, of one value.
_NAME_CHARS = f"[^{GS}{RS}{US}]*"
_VALUE_CHARS = f"[^{GS}{RS}]*"
_VALUE_END = f"[{GS}{RS}]"


def clean(text: str) -> str:
    """Content may never contain our separators (user input included)."""
    return _SEPARATORS.sub(" ", text)


def build_search_text(row: Mapping[str, Any]) -> str:
    """The search text of a flattened row (document fields plus derived ones)."""
    parts = [f"{RS}{clean(name)}{US}{clean(str(value))}" for name, value in row.items()]
    for name, value in row.items():
        if isinstance(value, list):
            parts.extend(
                f"{GS}{clean(inner)}{US}{clean(str(item))}"
                for inner, item in _list_fields(name, value)
            )
    parts.append(RS)
    return "".join(parts)


def _list_fields(name: str, items: list[Any]) -> Iterator[tuple[str, Any]]:
    """Every element of a list, recursively, named `<list>.<key>` for objects.

    Upstream tests list elements one by one with their nested keys (reference
    3.3) and skips element 0 and falsy values; we skip neither.
    """
    for item in items:
        if isinstance(item, Mapping):
            for inner, value in flatten(item, f"{name}.").items():
                yield inner, value
                if isinstance(value, list):
                    yield from _list_fields(inner, value)
        elif isinstance(item, list):
            yield name, item
            yield from _list_fields(name, item)
        elif item is not None:
            yield name, item


# A (name, value) element of the field values longer than this many
# characters is stored as its first ELEMENT_PREFIX characters and its SHA-256:
# a GIN index entry must fit in a third of a page (~2.7 KB), and a value can
# run to megabytes. Short elements have one US, long ones two: never equal.
LONG_ELEMENT = 256
ELEMENT_PREFIX = 200


def fold(text: str) -> str:
    """Case folded as the grid compares text: each character lower-cased on
    its own (Python's str.lower(), on every database), never one into two."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(ch if len(ch.lower()) != 1 else ch.lower() for ch in text)


def field_value(name: str, value: str) -> str:
    """The element of DataProduct.field_values that a row field `name` holding
    `value` gives, both as the search text holds them (cleaned), folded: what
    the grid's equals and isAnyOf filters look up."""
    return _bounded(fold(f"{clean(name)}{US}{clean(value)}"), US)


def present_value(name: str) -> str:
    """The element of DataProduct.field_values that says a row field `name`
    holds a value that is not empty (the grid's isNotEmpty): the name as
    written (isEmpty and isNotEmpty compare it exactly), then RS, which no
    field_value() element holds."""
    return _bounded(f"{clean(name)}{RS}", RS)


def _bounded(element: str, separator: str) -> str:
    """The element, or past LONG_ELEMENT characters its first ELEMENT_PREFIX
    and its SHA-256 after a second `separator` (the one it holds once)."""
    if len(element) <= LONG_ELEMENT:
        return element
    digest = hashlib.sha256(element.encode()).hexdigest()
    return f"{element[:ELEMENT_PREFIX]}{separator}{digest}"


def field_values(text: str) -> list[str]:
    """Every row field of a search text as a field_value() element, and a
    present_value() one when its value is not empty, sorted: the column the
    grid's equals and isEmpty filters read through a GIN index instead of
    rechecking a regular expression against each candidate's whole text.
    List elements' fields (after the first GS) are key:value search only."""
    elements = set()
    for chunk in text.split(GS, 1)[0].split(RS):
        if US in chunk:
            name, value = chunk.split(US, 1)
            elements.add(field_value(name, value))
            if value:
                elements.add(present_value(name))
    return sorted(elements)


def row_field_types(row: Mapping[str, Any]) -> dict[str, str]:
    """The grid type of each field of a flattened row: number, boolean, list, string."""
    types = {}
    for name, value in row.items():
        if isinstance(value, bool):
            types[name] = "boolean"
        elif isinstance(value, int | float):
            types[name] = "number"
        elif isinstance(value, list):
            types[name] = "list"
        else:
            types[name] = "string"
    return types


# --- Patterns ------------------------------------------------------------------
# Every pattern is a regular expression that PostgreSQL (ARE) and Python's re
# (Django's SQLite REGEXP) read the same way. User text is always escaped:
# metacharacters become literals and can never widen a match.


def literal(text: str) -> str:
    """Escape every ASCII punctuation character; the rest is literal in both dialects."""
    return "".join("\\" + ch if ch.isascii() and not ch.isalnum() else ch for ch in clean(text))


def key_value_pattern(key: str, value: str) -> str:
    """Some field (row or list element) whose name contains `key` and whose value
    contains `value`; an empty value needs a non-empty field value (reference 3.3).

    The pattern starts with the key itself: a name is the only part of the
    text followed by US before any other separator, so the key found there is
    inside a name. Starting from a literal, not from a separator class, lets
    Python's `re` jump to its occurrences (23 -> 4.5 us per search text).
    """
    value_part = f"{_VALUE_CHARS}{literal(value)}" if value else f"[^{GS}{RS}]"
    return f"{literal(key)}{_NAME_CHARS}{US}{value_part}"


def field_pattern(field: str, operator: str, values: list[str]) -> str:
    """The row field named exactly `field`, with a value that satisfies `operator`."""
    head = f"{RS}{literal(field)}{US}"
    alternatives = "|".join(literal(v) for v in values)
    if operator == "contains":
        return f"{head}{_VALUE_CHARS}({alternatives})"
    if operator == "startsWith":
        return f"{head}({alternatives})"
    if operator == "endsWith":
        return f"{head}{_VALUE_CHARS}({alternatives}){_VALUE_END}"
    raise ValueError(f"unknown pattern operator {operator!r}")


# LIKE patterns, for a column holding one value alone (execution_block's, see
# dpd.models.FoldedLike): user text escaped, so `%`, `_` and `\\` are literals.
_LIKE_SPECIAL = re.compile(r"([\\%_])")
_LIKE_WILDCARDS = {
    "contains": ("%", "%"),
    "equals": ("", ""),
    "startsWith": ("", "%"),
    "endsWith": ("%", ""),
}


def like_pattern(operator: str, text: str) -> str:
    """The LIKE pattern of a value test (as field_pattern's, on one value):
    the text as the search text would hold it, with the operator's wildcards."""
    if operator not in _LIKE_WILDCARDS:
        raise ValueError(f"unknown pattern operator {operator!r}")
    start, end = _LIKE_WILDCARDS[operator]
    escaped = _LIKE_SPECIAL.sub(r"\\\1", clean(text))
    return start + escaped + end


def like_as_regex(pattern: str) -> str:
    """A LIKE pattern (backslash escapes) as a case-insensitive regular
    expression for Python's `re` that matches the same whole strings."""
    parts, chars = [], iter(pattern)
    for ch in chars:
        if ch == "\\":
            parts.append(re.escape(next(chars, "\\")))
        elif ch == "%":
            parts.append(".*")
        elif ch == "_":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    return "(?is)\\A" + "".join(parts) + "\\Z"


def any_of_regex(values: Iterable[str]) -> str:
    """A case-insensitive regular expression for Python's `re` that matches a
    whole string equal to one of the values (like_as_regex of each value's
    "equals" pattern, as one alternation)."""
    return "(?is)\\A(?:" + "|".join(re.escape(v) for v in values) + ")\\Z"


# --- Signatures ------------------------------------------------------------------
# Which of SIGNATURE_BITS buckets the byte pairs (UTF-8 bigrams) of a search
# text fall in. A key:value pair can only match a text that holds its key and
# its value, so every bigram of both, so all their buckets: a 256-byte bit
# string stored inline with the row rules most products out without reading
# their ~2.7 KB search text (TOAST, decompression and a regular expression,
# ~17 us each in PostgreSQL). It is a necessary condition, never a match:
# what passes is still tested with the pattern.

SIGNATURE_BITS = 2048
_BUCKET_SHIFT = 32 - (SIGNATURE_BITS.bit_length() - 1)


@functools.cache
def _bucket_bits() -> tuple[list[int], list[int]]:
    """Each bigram's bucket (Fibonacci hashing of its 16 bits), and each
    bucket's bit as an integer (bucket 0 is the leftmost bit)."""
    buckets = [((gram * 0x9E3779B1) & 0xFFFFFFFF) >> _BUCKET_SHIFT for gram in range(1 << 16)]
    bits = [1 << (SIGNATURE_BITS - 1 - bucket) for bucket in range(SIGNATURE_BITS)]
    return buckets, bits


def _buckets(data: bytes) -> set[int]:
    """The buckets of every pair of adjacent bytes, read as 16-bit numbers by
    two C-level unpacks (even and odd offsets) and mapped without a Python loop."""
    if len(data) < 2:
        return set()
    bucket_of, _ = _bucket_bits()
    found = set(map(bucket_of.__getitem__, struct.unpack_from(f"<{len(data) // 2}H", data)))
    odd = struct.unpack_from(f"<{(len(data) - 1) // 2}H", data, 1)
    found.update(map(bucket_of.__getitem__, odd))
    return found


def _bit_string(buckets: set[int]) -> str:
    """Buckets as PostgreSQL bit-string input (`x` and hex digits)."""
    _, bit_of = _bucket_bits()
    return f"x{sum(map(bit_of.__getitem__, buckets)):0{SIGNATURE_BITS // 4}x}"


def signature(text: str) -> str:
    """The signature of a search text (DataProduct.search_signature)."""
    return _bit_string(_buckets(text.encode()))


def signature_mask(pairs: Iterable[tuple[str, str]]) -> str:
    """The buckets that a product's signature must all hold to match every
    key:value pair: the byte pairs of each key and value as the text holds
    them (cleaned), none across two of them."""
    buckets: set[int] = set()
    for key, value in pairs:
        buckets |= _buckets(clean(key).encode())
        buckets |= _buckets(clean(value).encode())
    return _bit_string(buckets)
