import gc
import io
import json
import os
from importlib import import_module

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dpd.settings")


def read_chunked_bodies(app):
    """Give Django the body of a request sent with chunked transfer encoding.

    Django reads CONTENT_LENGTH bytes of a request body, so a chunked body
    (`requests.post(url, data=generator)`, curl `-H 'Transfer-Encoding:
    chunked'`), which has no Content-Length, reads as empty. The upstream's
    server reads it. When the WSGI server has decoded the chunks and marks the
    input as terminated (gunicorn does), the body is read here, at most one
    byte past DATA_UPLOAD_MAX_MEMORY_SIZE, and handed on with its length: an
    oversized one then gets hardening's 413 like any other. A body the server
    cannot decode (a chunk size that is not hexadecimal, a chunk without its
    CRLF, the client gone mid-body: gunicorn raises an IOError while it is
    read) is a 400 answered here; gunicorn would close the connection
    without a word.
    """

    def application(environ, start_response):
        if (
            not environ.get("CONTENT_LENGTH")
            and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
            and environ.get("wsgi.input_terminated")
        ):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            stream = environ["wsgi.input"]
            try:
                body = stream.read() if limit is None else stream.read(limit + 1)
            except OSError as exc:
                return _bad_request(start_response, f"Malformed chunked request body: {exc}")
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return app(environ, start_response)

    return application


def _bad_request(start_response, detail: str) -> list[bytes]:
    body = json.dumps({"detail": detail}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    start_response("400 Bad Request", headers)
    return [body]


def served_under_root_path(app):
    """Serve the paths under API_ROOT_PATH as if at the root.

    Django writes every URL with the prefix (FORCE_SCRIPT_NAME), and routes
    PATH_INFO: a request that arrives with the prefix has it moved out here.
    One that arrives without it (the upstream chart's ingress strips the
    prefix, reference 1.1) is routed as it is. gunicorn's own SCRIPT_NAME
    handling refuses the latter, hence this rather than gunicorn's.
    """
    prefix = settings.API_ROOT_PATH
    if not prefix:
        return app

    def application(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == prefix or path.startswith(prefix + "/"):
            environ["PATH_INFO"] = path[len(prefix) :] or "/"
        return app(environ, start_response)

    return application


def settled(app):
    """Load every view now, then leave what the process has built out of the
    cyclic garbage collector's walks.

    Django, DRF and the URLconf are ~100,000 objects that live as long as the
    worker. A full collection walked them all: ~30 ms inside whichever
    request set it off, about once every 500 requests, which is where the
    p99 of 16 concurrent clients lies (bench_api, docs/api.md). Frozen, they
    are never walked again; garbage made later is collected as before.
    """
    import_module(settings.ROOT_URLCONF)  # and with it every view module
    gc.collect()
    gc.freeze()
    return app


_HEALTHY = b'{"status": "ok"}'


def answer_health(app):
    """Answer /healthz here, before Django's handler, its signals and its
    middleware: a liveness probe asks whether the process serves, and
    during a cold index (every core parsing) the few hundred microseconds
    of Python those cost were what put its p99 over 5 ms (docs/deployment.md).
    No database, no settings, no log line; every method gets the same 200."""

    def application(environ, start_response):
        if environ.get("PATH_INFO") != "/healthz":
            return app(environ, start_response)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(_HEALTHY)))]
        start_response("200 OK", headers)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [_HEALTHY]

    return application


application = settled(
    served_under_root_path(answer_health(read_chunked_bodies(get_wsgi_application())))
)
