"""Which bytes of a representation a request asks for (RFC 9110, 13.1.4, 14).

One range is served (206); anything else gets the standard answer: no
Range, a malformed one, a unit other than bytes, several ranges (we send no
multipart bodies) or an If-Range that does not match the current strong
ETag get the whole representation (200); a syntactically valid range that
starts at or past the end gets 416 with `Content-Range: bytes */LENGTH`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ByteRange:
    start: int
    stop: int  # exclusive

    @property
    def length(self) -> int:
        return self.stop - self.start

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.stop - 1}/{size}"


class Unsatisfiable(Exception):
    """The range asks for no byte of the representation: 416."""


def requested_range(
    range_header: str | None, if_range: str | None, *, size: int, etag: str
) -> ByteRange | None:
    """The single range to send, or None for the whole representation;
    Unsatisfiable for a 416."""
    if not range_header:
        return None
    if if_range is not None and if_range.strip() != etag:
        # A weak or other ETag, or a date (we send no Last-Modified): the
        # client's copy is not this archive, so it gets all of this one.
        return None
    if "," in range_header:
        return None
    match = _RANGE.match(range_header)
    if match is None:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    # Python refuses to parse ints of over 4,300 digits; any number of over
    # 30 is past every size we serve.
    huge = 10**30
    start = (int(first) if len(first) <= 30 else huge) if first else None
    end = (int(last) if len(last) <= 30 else huge) if last else None
    if start is None:  # the last `end` bytes
        if end == 0 or size == 0:
            raise Unsatisfiable
        return ByteRange(max(0, size - end), size)
    if end is not None and end < start:
        return None  # invalid: ignored, as RFC 9110 says
    if start >= size:
        raise Unsatisfiable
    stop = size if end is None else min(end + 1, size)
    return ByteRange(start, stop)
