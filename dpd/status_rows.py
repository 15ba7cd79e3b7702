"""What GET /status reads from the database, in one statement.

/status is polled by every dashboard and probe. It shows the catalogue's
version (the newest product's time and the number of removals: its counts
are remembered while that holds, dpd.remembered_counts), this volume's
indexing state and whether a run is queued, the last finished run, and the
SDP watcher's state. Read one by one, that was five statements, and the
ORM's building and compiling of them cost more than the database's answers:
4.2 ms of Python for ~0.6 ms of SQL at 100,000 products.

Here one statement reads them all, each a scalar subquery (a row as a JSON
object), built and compiled by the ORM once per process and shape (the
volume and whether the SDP is watched are the process's own) and then run
as SQL, the key:value window's way (dpd.search_rows). Everything is read at
once, so the blocks agree with each other and with /api/v1/index-runs/ as
of that moment: nothing is kept between calls.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass
from typing import Any

from django.db import connections, models
from django.db.models import Value
from django.db.models.functions import JSONObject
from django.utils import timezone
from django.utils.dateparse import parse_datetime, parse_duration

from dpd.compiled_rows import CompiledRow, converters_of
from dpd.remembered_counts import newest_product
from dpd.sdp_models import SdpWatcherState
from indexing.leader import volume_prefix
from indexing.models import IndexingState, IndexRun
from indexing.status import LAST_RUN_FIELDS, last_runs, queued_runs


@dataclass(frozen=True)
class StatusRows:
    version: tuple | None  # as Remembered.version() reads it (None: no product)
    state: IndexingState | None
    has_queued: bool
    last_run: IndexRun | None
    watcher: SdpWatcherState | None  # None too when the SDP is not watched

    @classmethod
    def read(cls, *, with_watcher: bool, using: str = "default") -> StatusRows:
        row = _statement(using, volume_prefix(), with_watcher).fetch(using)
        indexed_at, removals, state, has_queued, last_run, watcher = row
        vendor = connections[using].vendor
        return cls(
            version=None if indexed_at is None else (indexed_at, removals),
            state=_instance(IndexingState, state, vendor),
            has_queued=has_queued is not None,
            last_run=_instance(IndexRun, last_run, vendor),
            watcher=_instance(SdpWatcherState, watcher, vendor),
        )


@functools.lru_cache(maxsize=8)
def _statement(using: str, prefix: str, with_watcher: bool) -> CompiledRow:
    """This shape's statement, compiled once per process (dpd.compiled_rows):
    a SELECT of one scalar subquery per column, so that it has a row however
    empty the tables are."""
    columns, params, converters = [], [], []
    for index, part in enumerate(_parts(prefix, with_watcher)):
        compiler = part.query.get_compiler(using=using)
        sql, part_params = compiler.as_sql()
        columns.append(f"({sql})")
        params.extend(part_params)
        converters.extend(converters_of(compiler, offset=index))
    sql = f"SELECT {', '.join(columns)}"
    connection = connections[using]
    if connection.vendor == "postgresql":
        # Its ~40 parameters are constants (the JSON objects' key names, the
        # volume's prefix, statuses): written into the statement as psycopg's
        # client-side binding would send them, so that no call adapts them
        # again (~0.1 ms of a ~1.1 ms /status in the worker).
        return CompiledRow(connection.ops.compose_sql(sql, params), (), tuple(converters))
    return CompiledRow(sql, tuple(params), tuple(converters))


def _parts(prefix: str, with_watcher: bool) -> list[models.QuerySet]:
    """One query of one row and column for each of StatusRows' fields."""
    # The watcher writes row 1 only: row 0 reads NULL when the SDP is not watched.
    watcher = SdpWatcherState.objects.filter(pk=1 if with_watcher else 0)
    return [
        newest_product().values("indexed_at")[:1],
        newest_product().values("removals")[:1],
        _as_json(IndexingState.objects.filter(volume_prefix=prefix), _attnames(IndexingState)),
        queued_runs(prefix).values(one=Value(1))[:1],
        _as_json(last_runs(prefix), ["id", *LAST_RUN_FIELDS]),
        _as_json(watcher, _attnames(SdpWatcherState)),
    ]


def _attnames(model: type[models.Model]) -> list[str]:
    return [field.attname for field in model._meta.concrete_fields]


def _as_json(rows: models.QuerySet, names: list[str]) -> models.QuerySet:
    """The first of `rows` as a JSON object of `names`."""
    return rows.values(row=JSONObject(**{name: name for name in names}))[:1]


def _instance(
    model: type[models.Model], data: dict[str, Any] | None, vendor: str
) -> models.Model | None:
    """A model instance from one of the JSON objects (None stays None)."""
    if data is None:
        return None
    # In the model's order, as from_db() takes them (jsonb orders keys its own way).
    fields = [field for field in model._meta.concrete_fields if field.attname in data]
    values = [_python(field, data[field.attname], vendor) for field in fields]
    return model.from_db(None, [field.attname for field in fields], values)


def _python(field: models.Field, value: Any, vendor: str) -> Any:
    """A JSON value as the ORM would have read the column.

    PostgreSQL writes times in ISO 8601 with their offset, intervals as
    text, booleans and JSON as themselves; SQLite writes times as naive UTC
    text, intervals as microseconds, booleans as 0 or 1, and a JSON column as
    its text.
    """
    if value is None:
        return None
    if isinstance(field, models.DateTimeField):
        moment = parse_datetime(value)
        return timezone.make_aware(moment, dt.UTC) if timezone.is_naive(moment) else moment
    if isinstance(field, models.DurationField):
        return dt.timedelta(microseconds=value) if isinstance(value, int) else parse_duration(value)
    if isinstance(field, models.JSONField):
        return json.loads(value) if vendor == "sqlite" else value
    if isinstance(field, models.BooleanField):
        return bool(value)
    return field.to_python(value)
