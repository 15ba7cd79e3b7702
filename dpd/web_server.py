"""How the service's WSGI server runs: gunicorn's command line, and its worker.

gunicorn refuses some requests before Django sees them (a request line longer
than limit_request_line, too many or too large headers, a malformed request
line or header, an unknown transfer coding) and answers them with an HTML
page of its own. Every other error of the API is `{"detail": ...}` JSON
(dpd.api.exceptions), which scripts and the dashboard parse; the worker here
writes gunicorn's refusals the same way, with gunicorn's status and message.

One command line for every server that is started (manage.py runservice, the
benches, the tests that need a real socket), so that they all run what
production runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from http import HTTPStatus

from gunicorn import util
from gunicorn.workers.sync import SyncWorker

WORKER_CLASS = "dpd.web_server.JsonErrorSyncWorker"
SHARED_MEMORY = "/dev/shm"


def gunicorn_command(bind: str, workers: int, *options: str) -> list[str]:
    """The argv that serves dpd.wsgi on `bind`; `options` are more gunicorn flags.

    Each worker proves it is alive by touching a file for every request it
    takes; in memory (/dev/shm, where there is one) that never waits on the
    disk's journal, as gunicorn's documentation advises for containers.
    """
    argv = [sys.executable, "-m", "gunicorn", "dpd.wsgi:application", "--bind", bind]
    argv += ["--workers", str(workers), "--worker-class", WORKER_CLASS]
    if os.path.isdir(SHARED_MEMORY) and os.access(SHARED_MEMORY, os.W_OK):
        argv += ["--worker-tmp-dir", SHARED_MEMORY]
    return [*argv, *options]


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's util.write_error, with a JSON body instead of an HTML page
    (and the status's own reason phrase: gunicorn sends "501 Bad Request")."""
    body = json.dumps({"detail": mesg or reason}).encode()
    with contextlib.suppress(ValueError):
        reason = HTTPStatus(status_int).phrase
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


class JsonErrorSyncWorker(SyncWorker):
    """gunicorn's sync worker; its refusals are JSON.

    gunicorn's Worker.handle_error picks the status and message and writes
    them through `gunicorn.util.write_error`, looked up at each call: the
    worker process points that name at write_json_error before it serves,
    which keeps gunicorn's own choice of status and message for each error.
    """

    def init_process(self) -> None:
        util.write_error = write_json_error
        super().init_process()  # serves until the worker exits
