"""Request leniency the dashboard's scripts rely on."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class JsonWithoutContentTypeMiddleware:
    """Treat a body sent without Content-Type as JSON (reference 1.2).

    `requests.post(url, data=json.dumps(body))` sends no Content-Type, and the
    upstream parses such bodies as JSON; DRF would see an empty body.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (
            request.method in ("POST", "PUT", "PATCH")
            and not request.META.get("CONTENT_TYPE")
            and request.META.get("CONTENT_LENGTH") not in (None, "", "0")
        ):
            request.META["CONTENT_TYPE"] = "application/json"
        return self.get_response(request)


class CorsAllowRequestedHeadersMiddleware:
    """Allow every request header in CORS preflights, as upstream does
    (reference 1.4: Starlette's `allow_headers=["*"]` echoes the requested
    ones, since a literal `*` is not a wildcard for credentialed requests).

    django-cors-headers decides the origin; this only widens the header list of
    a preflight it has already accepted. Listed before CorsMiddleware, so it
    sees that middleware's response.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        requested = request.META.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "")
        if (
            request.method == "OPTIONS"
            and requested.strip()
            and response.has_header("Access-Control-Allow-Origin")
            and response.has_header("Access-Control-Allow-Headers")
        ):
            response["Access-Control-Allow-Headers"] = requested
        return response
