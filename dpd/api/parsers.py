"""JSON request parsers: DRF's, with checks that turn hostile bodies into 4xx.

Python's json module raises RecursionError (not ValueError, which DRF
catches) for a document nested about a thousand levels deep, so a 2 KB body
of brackets was a 500 on every endpoint; and it accepts `"\\ud800"`, a
string no UTF-8 encoder takes, which was a 500 wherever it reached the
database. Both are refused as malformed JSON before any view code sees the
document. The depth limit is well above what a metadata document may have
(dpd.metadata.MAX_DEPTH, 64), so a merely deep document still gets the
metadata validation's own message.
"""

from __future__ import annotations

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_JSON_DEPTH = 200


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser; too deep a document, or a string with an unpaired
    surrogate (`"\\ud800"` is valid JSON but no UTF-8 text: PostgreSQL and the
    response encoder fail on it), is a ParseError (400 by default)."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            problem = f"nested deeper than {MAX_JSON_DEPTH} levels"
        else:
            problem = _problem(data)
        if problem:
            raise ParseError(f"JSON parse error - {problem}")
        return data


class AnyContentTypeJSONParser(JSONParser):
    """Upstream reads /filterdataproducts' body as JSON whatever its
    Content-Type (`await request.json()`), so `curl -d '{...}'` (form-encoded)
    works too."""

    media_type = "*/*"


def _problem(data: Any) -> str | None:
    """What makes a parsed document unusable here, or None."""
    stack = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return f"nested deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(node, dict):
            if not all(map(_is_text, node)):
                return "a key holds an unpaired surrogate (not UTF-8 text)"
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)
        elif isinstance(node, str) and not _is_text(node):
            return "a string holds an unpaired surrogate (not UTF-8 text)"
    return None


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
