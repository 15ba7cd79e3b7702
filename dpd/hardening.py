"""Request hardening: body size limit, anonymous throttling, login throttling.

- DRF's JSON parser reads the request stream directly, so Django's
  DATA_UPLOAD_MAX_MEMORY_SIZE check (done in `request.body`) never runs for
  API bodies; `RequestBodyLimitMiddleware` applies that same setting to every
  request before anything reads the body, with a 413 that says the limit.
  A body that stops arriving part way (the web server's idle limit,
  DPD_CLIENT_IDLE_TIMEOUT, or a client gone) is a 408, not a 500 with a
  traceback: the client was slow, the server did not fail.
- `AnonymousRateThrottle` is DRF's anonymous throttle, with the rate read at
  request time (DRF binds rates at import, which settings can't change).
- `LoginThrottleMiddleware` refuses logins from a client address that failed
  DPD_LOGIN_FAILURE_LIMIT times within DPD_LOGIN_LOCKOUT_SECONDS (the admin's
  and the pages' login forms; failures are counted in Django's cache).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import ipaddress
import logging
import socket
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse, UnreadablePostError
from django.urls import NoReverseMatch, get_script_prefix, get_urlconf, reverse
from rest_framework.throttling import AnonRateThrottle, BaseThrottle

from dpd.refusal import refusal_page

# Oversized bodies up to this size are read and dropped before the 413 (see
# RequestBodyLimitMiddleware); larger ones are refused without reading them.
BODY_DRAIN_LIMIT = 64 * 1024 * 1024

logger = logging.getLogger(__name__)


class RequestBodyLimitMiddleware:
    """413 for a declared body larger than DATA_UPLOAD_MAX_MEMORY_SIZE."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse({"detail": "Content-Length is not a number."}, status=400)
        if limit is not None and length > limit:
            if length <= BODY_DRAIN_LIMIT:
                # Read what the client sends before answering: a server that
                # closes with the body unread resets the connection, and many
                # clients (Python's http.client, requests) then never see the 413.
                try:
                    while request.read(1 << 16):
                        pass
                except UnreadablePostError as exc:
                    return body_stopped(request, exc)
            return JsonResponse(
                {
                    "detail": (
                        f"Request body is {length} bytes; the limit is {limit} bytes "
                        "(DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE)."
                    )
                },
                status=413,
            )
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, UnreadablePostError):
            return body_stopped(request, exception)
        return None


def body_stopped(request: HttpRequest, exc: UnreadablePostError) -> HttpResponse:
    """408 for a body that stopped arriving, and no keep-alive after it.

    The rest of the body may still come, and would be read as the next
    request: the connection's read side is shut, so that gunicorn closes it
    once the answer is sent.
    """
    idle = settings.DPD_CLIENT_IDLE_TIMEOUT
    logger.info(
        "%s %s: the body stopped arriving (%s); sent or read nothing for %s s",
        request.method,
        request.path,
        exc,
        idle,
    )
    sock = request.META.get("gunicorn.socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # already gone
            sock.shutdown(socket.SHUT_RD)
    return JsonResponse(
        {
            "detail": (
                "The request body stopped arriving before its Content-Length: "
                f"sent or read nothing for {idle} s (DPD_CLIENT_IDLE_TIMEOUT)."
            )
        },
        status=408,
    )


class AnonymousRateThrottle(AnonRateThrottle):
    """DRF's per-address throttle for unauthenticated callers; DPD_THROTTLE_ANON_RATE,
    empty turns it off."""

    def get_rate(self) -> str | None:
        return settings.DPD_THROTTLE_ANON_RATE or None

    def allow_request(self, request, view) -> bool:
        # The rate is re-read per request so a settings change takes effect.
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_ident(self, request) -> str:
        return client_address(request)


def client_address(request: HttpRequest) -> str:
    """The caller's address as the throttles count it: DRF's reading of
    X-Forwarded-For DPD_NUM_PROXIES hops back, believed only on a connection
    from one of DPD_PROXY_ADDRESSES when that is set (a client that reaches a
    pod directly cannot pick its own bucket)."""
    remote = request.META.get("REMOTE_ADDR", "")
    if settings.DPD_NUM_PROXIES and settings.DPD_PROXY_ADDRESSES and not _from_proxy(remote):
        return remote
    return BaseThrottle().get_ident(request)


def _from_proxy(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(
        ip in ipaddress.ip_network(cidr, strict=False) for cidr in settings.DPD_PROXY_ADDRESSES
    )


# Every password form: the admin's and the pages' (Django's LoginView, both
# redirect on success and re-render the form on failure).
LOGIN_URL_NAMES = ("admin:login", "pages-login")


def _login_paths() -> frozenset[str]:
    """The login forms' paths under this request's URLconf and prefix:
    reversed once for each, since every POST (every search) asks, and two
    reverse() calls were ~90 us of a ~3 ms search."""
    return _reversed_login_paths(get_urlconf() or settings.ROOT_URLCONF, get_script_prefix())


@functools.lru_cache(maxsize=16)
def _reversed_login_paths(urlconf: str, prefix: str) -> frozenset[str]:
    paths = set()
    for name in LOGIN_URL_NAMES:
        try:
            paths.add(reverse(name, urlconf=urlconf))
        except NoReverseMatch:  # a login page not routed in this deployment
            continue
    return frozenset(paths)


def _failures_key(address: str) -> str:
    return "dpd:login-failures:" + hashlib.sha256(address.encode()).hexdigest()


class LoginThrottleMiddleware:
    """Stop password guessing on the login form: after DPD_LOGIN_FAILURE_LIMIT
    failed attempts from one address, further attempts get 429 until
    DPD_LOGIN_LOCKOUT_SECONDS have passed since the last failure."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST" or request.path not in _login_paths():
            return self.get_response(request)
        limit = settings.DPD_LOGIN_FAILURE_LIMIT
        if limit == 0:
            return self.get_response(request)
        key = _failures_key(client_address(request))
        if cache.get(key, 0) >= limit:
            seconds = settings.DPD_LOGIN_LOCKOUT_SECONDS
            # An HTML page, like the login forms it stands in for.
            message = f"Too many failed logins from this address; try again in {seconds} seconds."
            response = refusal_page(request, 429, message)
            response["Retry-After"] = str(seconds)
            return response
        response = self.get_response(request)
        # The admin login redirects on success and re-renders the form on failure.
        if response.status_code == 302 and request.user.is_authenticated:
            cache.delete(key)
        else:
            cache.add(key, 0, settings.DPD_LOGIN_LOCKOUT_SECONDS)
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.set(key, 1, settings.DPD_LOGIN_LOCKOUT_SECONDS)
            cache.touch(key, settings.DPD_LOGIN_LOCKOUT_SECONDS)
        return response
