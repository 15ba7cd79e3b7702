"""JSON request parsers: DRF's, with limits that turn hostile bodies into 4xx.

Python's json module raises RecursionError (not ValueError, which DRF
catches) for a document nested about a thousand levels deep, so a 2 KB body
of brackets was a 500 on every endpoint. Bodies nested deeper than the
metadata documents may be (dpd.metadata.MAX_DEPTH) are refused as malformed
JSON before any view code walks them.
"""

from __future__ import annotations

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_JSON_DEPTH = 200


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser; too deep a document is a ParseError (400 by default)."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            data = None
            deep = True
        else:
            deep = nested_deeper_than(data, MAX_JSON_DEPTH)
        if deep:
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels")
        return data


class AnyContentTypeJSONParser(JSONParser):
    """Upstream reads /filterdataproducts' body as JSON whatever its
    Content-Type (`await request.json()`), so `curl -d '{...}'` (form-encoded)
    works too."""

    media_type = "*/*"


def nested_deeper_than(data: Any, limit: int) -> bool:
    stack = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)
    return False
