"""How the service's web server runs: gunicorn's command line and its worker.

The worker is gunicorn's threaded worker (the serving model: dpd.gunicorn_conf,
docs/deployment.md) with three additions:

- Its refusals are JSON. gunicorn refuses some requests before Django sees
  them (a request line longer than limit_request_line, too many or too large
  headers, a malformed request line or header, an unknown transfer coding)
  and answers them with an HTML page of its own. Every other error of the API
  is `{"detail": ...}` JSON (dpd.api.exceptions), which scripts and the
  dashboard parse; the worker writes gunicorn's refusals the same way, with
  gunicorn's status and message.
- Clients that hold a connection without using it are closed: one that has
  not sent its whole request line and headers DPD_REQUEST_HEADER_TIMEOUT
  seconds after connecting (headers trickled byte by byte hold a thread), and
  one that sends or reads nothing for DPD_CLIENT_IDLE_TIMEOUT seconds (the
  kernel's SO_SNDTIMEO/SO_RCVTIMEO, which restart with every byte that
  moves: a slow transfer is never cut, a stalled one is).
- On SIGTERM it stops accepting, gives requests in flight (downloads)
  DPD_SHUTDOWN_GRACE_SECONDS to finish, then ends the rest and logs them.

One command line for every server that is started (manage.py runservice, the
benches, the tests that need a real socket), so that they all run what
production runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import struct
import sys
import threading
import time
from http import HTTPStatus

from django.conf import settings
from gunicorn import util
from gunicorn.workers.gthread import TConn, ThreadWorker

# Checking for clients over their time limits walks the worker's connections;
# once a second is enough for limits counted in seconds.
SWEEP_SECONDS = 1.0


def gunicorn_command(bind: str, workers: int, *options: str) -> list[str]:
    """The argv that serves dpd.wsgi on `bind`; `options` are more gunicorn flags."""
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:dpd.gunicorn_conf"]
    argv += ["dpd.wsgi:application", "--bind", bind, "--workers", str(workers)]
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


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


class ServiceWorker(ThreadWorker):
    """gunicorn's threaded worker with JSON refusals, request and idle time
    limits, and a bounded graceful stop (the module docstring says why).

    gunicorn's Worker.handle_error picks the status and message and writes
    them through `gunicorn.util.write_error`, looked up at each call: the
    worker process points that name at write_json_error before it serves,
    which keeps gunicorn's own choice of status and message for each error.
    """

    def init_process(self) -> None:
        util.write_error = write_json_error
        # Connections that have not yet sent a whole request, with the
        # monotonic time by which they must have.
        self.request_deadlines: dict = {}
        self.next_sweep = 0.0
        super().init_process()  # serves until the worker exits

    def run(self) -> None:
        # gunicorn points the signal wake-up fd at PIPE[1]: watching PIPE[0]
        # ends the poll as soon as a signal arrives, so SIGTERM stops the
        # accepting at once, not when the poll's 1 s runs out.
        self.poller.register(self.PIPE[0], selectors.EVENT_READ, _drain)
        super().run()

    # --- the time limits -----------------------------------------------------

    def enqueue_req(self, conn) -> None:
        if conn not in self.request_deadlines:  # a kept-alive connection's next request
            self.request_deadlines[conn] = time.monotonic() + settings.DPD_REQUEST_HEADER_TIMEOUT
        if not getattr(conn, "idle_limits_set", False):
            idle = _timeval(settings.DPD_CLIENT_IDLE_TIMEOUT)
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, idle)
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, idle)
            conn.idle_limits_set = True
        super().enqueue_req(conn)

    def handle_request(self, req, conn):
        self.request_deadlines.pop(conn, None)  # its request line and headers are in
        try:
            return super().handle_request(req, conn)
        except BlockingIOError:
            # SO_SNDTIMEO or SO_RCVTIMEO: no byte moved for the idle limit.
            self.log.info(
                "closed the connection from %s: it sent or read nothing for %s s",
                _address(conn.client),
                settings.DPD_CLIENT_IDLE_TIMEOUT,
            )
            raise StopIteration from None  # gunicorn closes the connection

    def finish_request(self, fs) -> None:
        self.request_deadlines.pop(fs.conn, None)
        super().finish_request(fs)

    def murder_keepalived(self) -> None:
        """gunicorn's step for idle kept-alive connections, run on every turn
        of the master loop; it also closes connections that are too slow to
        send their request."""
        super().murder_keepalived()
        now = time.monotonic()
        if now < self.next_sweep:
            return
        self.next_sweep = now + SWEEP_SECONDS
        limit = settings.DPD_REQUEST_HEADER_TIMEOUT
        for key in list(self.poller.get_map().values()):
            conn = next(iter(getattr(key.data, "args", ())), None)
            if isinstance(conn, TConn) and not conn.initialized:  # connected, not a byte yet
                self.request_deadlines.setdefault(conn, now + limit)
        for conn, deadline in list(self.request_deadlines.items()):
            if deadline > now:
                continue
            self.request_deadlines.pop(conn, None)
            self.log.info(
                "closed the connection from %s: no complete request within %s s",
                _address(conn.client),
                limit,
            )
            if conn.initialized:
                # A thread is reading its request: the read ends at once.
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)
            else:
                with self._lock, contextlib.suppress(KeyError, ValueError, OSError):
                    self.poller.unregister(conn.sock)
                self.nr_conns -= 1
                conn.close()

    # --- stopping ----------------------------------------------------------

    def handle_exit(self, sig, frame) -> None:
        """SIGTERM: stop accepting (gunicorn's own step), and end whatever is
        still in flight once the grace period is over."""
        super().handle_exit(sig, frame)
        grace = settings.DPD_SHUTDOWN_GRACE_SECONDS
        if self.futures:
            self.log.info(
                "stopping: %d request(s) in flight get up to %s s to finish",
                len(self.futures),
                grace,
            )
        timer = threading.Timer(grace, self.end_requests_in_flight)
        timer.daemon = True
        timer.start()

    def end_requests_in_flight(self) -> None:
        unfinished = [fs for fs in list(self.futures) if not fs.done()]
        if unfinished:
            self.log.warning(
                "grace period of %s s over: cutting %d request(s) still in flight",
                settings.DPD_SHUTDOWN_GRACE_SECONDS,
                len(unfinished),
            )
        for fs in unfinished:
            with contextlib.suppress(OSError):
                fs.conn.sock.shutdown(socket.SHUT_RDWR)


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError, InterruptedError):
        while os.read(fd, 4096):
            pass


def _address(client) -> str:
    if isinstance(client, tuple | list) and len(client) >= 2:
        return f"{client[0]}:{client[1]}"
    return str(client)
