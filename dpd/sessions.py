"""Django's database sessions, refusing cookie values Django could not have made.

A `sessionid` cookie is looked up in the database as sent; one holding a NUL
character made PostgreSQL fail the query (DataError), so any request that
asked who the user is answered 500 (schemathesis found it on /annotation).
Django makes keys of lowercase letters and digits only; any other cookie
value is no session at all, like an expired one.
"""

from __future__ import annotations

from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore

_VALID = frozenset(VALID_KEY_CHARS)


class SessionStore(DatabaseSessionStore):
    def _validate_session_key(self, key: str | None) -> bool:
        return bool(super()._validate_session_key(key)) and _VALID.issuperset(key)
