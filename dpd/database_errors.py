"""What a database error says about the database: unreachable, or refusing
one query for its size or shape, or stopping it at its time limit, or
something else.

Only the first is the 503 "not available" answer (dpd.api.exceptions): a
client told to retry must have a chance of success, and an operator who
sees it looks at the database server, not at a request. Django raises
OperationalError for all three (SQLite's "Expression tree is too large" and
a refused connection alike), so the cause is read from the driver's error:
PostgreSQL's SQLSTATE (psycopg), SQLite's result code and message.
"""

from __future__ import annotations

import enum
import sqlite3

from django.db import DatabaseError, InterfaceError


class Cause(enum.Enum):
    UNAVAILABLE = "unavailable"  # lost, refused or busy connection: try again
    TOO_LARGE = "too_large"  # the query's size or shape: never succeeds as sent
    TIMED_OUT = "timed_out"  # stopped at the server's statement_timeout (or cancelled)
    OTHER = "other"  # a fault of ours (or the schema's): a 500


# SQLSTATE classes and codes of an unreachable server (PostgreSQL Appendix A):
# 08 connection exception; 57P01-57P03 shutdown, crash, not yet accepting;
# 53300 too many connections (the server refused one more).
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03", "53300")
# 54 program limit exceeded (statement too complex, too many arguments or
# columns, stack depth); 2201B invalid regular expression, which our escaped
# patterns only raise for their size ("regular expression is too complex").
_TOO_LARGE_STATES = ("54", "2201B")
# 57014 query_canceled: statement_timeout, which deployments set on the
# service's role to protect the server, or an operator's pg_cancel_backend.
_TIMED_OUT_STATES = ("57014",)

# SQLite result codes of a file that cannot be reached or is held by another
# writer past the busy timeout.
_SQLITE_UNAVAILABLE = {"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR"}
# SQLite reports its size limits as SQLITE_ERROR with these messages
# (sqlite.org/limits.html), or as SQLITE_TOOBIG.
_SQLITE_TOO_LARGE_MESSAGES = (
    "expression tree is too large",
    "too many sql variables",
    "too many terms in compound select",
    "too many columns",
    "like or glob pattern too complex",
    "parser stack overflow",
    "string or blob too big",
    "at most 64 tables in a join",
)


def cause(exc: BaseException) -> Cause:
    """Why the database answered with `exc` (a Django DatabaseError)."""
    if not isinstance(exc, DatabaseError):
        return Cause.OTHER
    driver = exc.__cause__
    if driver is None:  # raised by Django itself, not by the driver
        return Cause.UNAVAILABLE if isinstance(exc, InterfaceError) else Cause.OTHER
    if isinstance(driver, sqlite3.Error):
        return _sqlite_cause(driver)
    state = getattr(driver, "sqlstate", None)
    if state is not None:
        if state.startswith(_UNAVAILABLE_STATES):
            return Cause.UNAVAILABLE
        if state.startswith(_TOO_LARGE_STATES):
            return Cause.TOO_LARGE
        if state.startswith(_TIMED_OUT_STATES):
            return Cause.TIMED_OUT
        return Cause.OTHER
    # No SQLSTATE: Django's "connection already closed", or psycopg's own
    # error before or instead of the server's answer, about the connection
    # (refused, lost) save for one: a query past the protocol's 65,535
    # parameters, which psycopg refuses without sending it.
    if not isinstance(exc, InterfaceError) and "number of parameters" in str(driver):
        return Cause.TOO_LARGE
    return Cause.UNAVAILABLE


def _sqlite_cause(error: sqlite3.Error) -> Cause:
    name = getattr(error, "sqlite_errorname", "") or ""
    if name.startswith(tuple(_SQLITE_UNAVAILABLE)):
        return Cause.UNAVAILABLE
    message = str(error).lower()
    if name == "SQLITE_TOOBIG" or any(text in message for text in _SQLITE_TOO_LARGE_MESSAGES):
        return Cause.TOO_LARGE
    if "unable to open database file" in message or "database is locked" in message:
        return Cause.UNAVAILABLE
    return Cause.OTHER
