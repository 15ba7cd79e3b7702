"""The HTML refusal page of the server-rendered pages (403, 404, 429, 503), shared
by the annotation pages, the project's 404 handler and the login lockout.

It lives in dpd, which every app may import, so that the project's own
handlers do not depend on a feature app (dpd/__init__.py)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

TITLES = {
    403: "Not allowed",
    404: "Not found",
    429: "Too many attempts",
    503: "Not available now",
}


def refusal_page(request: HttpRequest, status: int, message: str) -> HttpResponse:
    context = {"status": status, "title": TITLES.get(status, "Refused"), "message": message}
    return render(request, "refused.html", context, status=status)
