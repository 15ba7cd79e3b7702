"""gzip for the API's JSON and table answers, when the client accepts it.

The dashboard's first load is the 10,000-row list: 20 MB of JSON, 2.4 MB
gzipped. Browsers and `requests` always send `Accept-Encoding: gzip` and
decompress on their own; curl sends nothing unless told to (`--compressed`)
and gets the bytes as before. Downloads are never compressed (reference 2.9:
the archive is an uncompressed tar whatever the client accepts, with an exact
Content-Length and ranges), nor is any other streamed response.
"""

from __future__ import annotations

import gzip
import io
import secrets
import threading
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.middleware.gzip import GZipMiddleware
from django.utils.cache import patch_vary_headers

# What is worth compressing: the API's answers. HTML pages carry CSRF tokens
# and are small; they go as they are.
COMPRESSED_TYPES = frozenset({"application/json", "text/csv", "text/tab-separated-values"})
# Below one TCP segment there is nothing to gain.
MIN_BYTES = 1400
# A body compressed for one answer: level 1, 4 ms a MB and ~6 times smaller
# (a 20 MB list: 85 ms, 3.4 MB). A body kept for many answers: level 6, once,
# 9.6 ms a MB and ~8 times smaller (193 ms, 2.4 MB). Measured on the
# 10,000-row list (docs/api.md, "Compressed answers").
EACH_ANSWER_LEVEL = 1
KEPT_LEVEL = 6
# Up to this many bytes of random padding in each gzip header, as Django's
# GZipMiddleware adds, so that the compressed length does not tell an
# attacker who reflects text into an answer whether it matched (BREACH).
MAX_RANDOM_BYTES = GZipMiddleware.max_random_bytes


def gzip_bytes(data: bytes, level: int) -> bytes:
    """`data` as one gzip member, its header padded with a random file name."""
    buffer = io.BytesIO()
    padding = b"x" * secrets.randbelow(MAX_RANDOM_BYTES + 1)
    with gzip.GzipFile(padding, "wb", level, buffer, mtime=0) as stream:
        stream.write(data)
    return buffer.getvalue()


def accepts_gzip(request: HttpRequest) -> bool:
    """Whether Accept-Encoding allows gzip: named (or `*`) without `q=0`.

    Django's own check finds "gzip" anywhere, so `gzip;q=0` (RFC 9110
    12.5.3: "not acceptable") would still get gzip.
    """
    offered = {}
    for item in request.META.get("HTTP_ACCEPT_ENCODING", "").split(","):
        coding, *parameters = (part.strip() for part in item.split(";"))
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if coding:
            offered[coding.lower()] = weight
    return offered.get("gzip", offered.get("x-gzip", offered.get("*", 0.0))) > 0


def _media_type(response: HttpResponseBase) -> str:
    return response.get("Content-Type", "").split(";")[0].strip().lower()


class ApiGZipMiddleware:
    """Compress a whole JSON, CSV or TSV answer of MIN_BYTES or more for a
    client that accepts gzip; everything else passes untouched. A kept body's
    answer brings its own gzip, made once (KeptBody)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]):
        if not settings.DPD_GZIP_ANSWERS:
            raise MiddlewareNotUsed
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if response.streaming or _media_type(response) not in COMPRESSED_TYPES:
            return response
        patch_vary_headers(response, ("Accept-Encoding",))
        if (
            response.has_header("Content-Encoding")
            or len(response.content) < MIN_BYTES
            or not accepts_gzip(request)
        ):
            return response
        kept = getattr(response, "kept_gzip", None)
        compressed = kept() if kept else gzip_bytes(response.content, EACH_ANSWER_LEVEL)
        if len(compressed) >= len(response.content):
            return response
        response.content = compressed
        response["Content-Length"] = str(len(compressed))
        response["Content-Encoding"] = "gzip"
        etag = response.get("ETag")
        if etag and etag.startswith('"'):  # RFC 9110 8.8.1: other bytes, a weak tag
            response["ETag"] = "W/" + etag
        return response


class KeptBody:
    """A body kept for many requests (dpd.remembered_counts' answers), and its
    gzip, made once on first demand: the 10,000-row list takes ~0.2 s to
    compress, which sixteen dashboards opening at once should not each pay."""

    def __init__(self, body: bytes):
        self.body = body
        self._gzipped: bytes | None = None
        self._lock = threading.Lock()

    def gzipped(self) -> bytes:
        if self._gzipped is None:
            with self._lock:
                if self._gzipped is None:
                    self._gzipped = gzip_bytes(self.body, KEPT_LEVEL)
        return self._gzipped

    def response(self, content_type: str) -> HttpResponse:
        """The body, with its gzip for ApiGZipMiddleware to send instead if
        the client accepts it."""
        response = HttpResponse(self.body, content_type=content_type)
        response.kept_gzip = self.gzipped
        return response
