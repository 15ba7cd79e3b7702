"""CSV and TSV renderings of search and filter rows (`Accept: text/csv`,
`text/tab-separated-values`): the flattened rows as a table, one column per
field in order of first appearance; list values are JSON text."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from rest_framework.renderers import BaseRenderer


class _TableRenderer(BaseRenderer):
    charset = "utf-8"
    delimiter = ","

    def render(self, data: Any, accepted_media_type=None, renderer_context=None) -> bytes:
        if isinstance(data, dict):
            # A paged response renders its rows; an error renders its one-row body.
            rows = data["data"] if isinstance(data.get("data"), list) else [data]
        else:
            rows = data or []
        columns: dict[str, None] = {}
        for row in rows:
            columns.update(dict.fromkeys(row))
        out = io.StringIO()
        writer = csv.writer(out, delimiter=self.delimiter, lineterminator="\r\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(_cell(row.get(column)) for column in columns)
        return out.getvalue().encode(self.charset)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


class CSVRenderer(_TableRenderer):
    media_type = "text/csv"
    format = "csv"


class TSVRenderer(_TableRenderer):
    media_type = "text/tab-separated-values"
    format = "tsv"
    delimiter = "\t"
