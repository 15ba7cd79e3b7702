"""Django's PostgreSQL backend with a health check that does not query.

The service keeps its connections between requests (CONN_MAX_AGE) and checks
one before a request uses it (CONN_HEALTH_CHECKS), so that a session the
server ended meanwhile (a restart, a failover, `pg_terminate_backend`, an
idle timeout) is replaced instead of failing that request. Django checks with
`SELECT 1`: a round trip before every request. A server that ends a session
says so on its socket (an error message, then end of file), so the socket of
an idle connection tells the same without asking the server: readable means
ended (or something unrequested arrived; either way a new connection is
safe). A host that vanished without a word defeats both checks alike.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus

_UNUSABLE = (TransactionStatus.UNKNOWN, TransactionStatus.INERROR)


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        if connection.info.transaction_status in _UNUSABLE:
            return False
        try:
            poller = select.poll()
            poller.register(connection.fileno(), select.POLLIN | select.POLLPRI)
            return not poller.poll(0)
        except (OSError, ValueError):  # the socket is gone
            return False
