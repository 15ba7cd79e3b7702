"""One-row statements the ORM builds and compiles once per process.

Some statements run on every request and never change their text: the
catalogue's version (dpd.remembered_counts) and /status's read
(dpd.status_rows). For them, the ORM's building and compiling cost more than
PostgreSQL's answer, so each is compiled once and then run on a cursor. The
ORM's converters are kept with it and applied to the row, so that values come
back as a queryset returns them (aware datetimes and parsed JSON on SQLite).
The converters read only settings (a time zone), so one compiled statement
serves every thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.db.models import Expression
from django.db.models.sql.compiler import SQLCompiler

# (column index, the converter functions, the expression they convert)
Converter = tuple[int, tuple[Callable[..., Any], ...], Expression]


@dataclass(frozen=True)
class CompiledRow:
    sql: str
    params: tuple
    converters: tuple[Converter, ...]

    def fetch(self, using: str) -> list | None:
        """The statement's first row, converted, or None when it has none."""
        connection = connections[using]
        with connection.cursor() as cursor:
            # No parameters: None, so that a `%` written into the SQL is left alone.
            cursor.execute(self.sql, self.params or None)
            row = cursor.fetchone()
        if row is None:
            return None
        values = list(row)
        for index, functions, expression in self.converters:
            for function in functions:
                values[index] = function(values[index], expression, connection)
        return values


def converters_of(compiler: SQLCompiler, *, offset: int = 0) -> tuple[Converter, ...]:
    """The converters of a compiled query's columns, placed `offset` columns
    along the row (where the query is one column of a wider SELECT)."""
    selected = [expression for expression, _, _ in compiler.select]
    return tuple(
        (offset + index, tuple(functions), expression)
        for index, (functions, expression) in compiler.get_converters(selected).items()
    )
