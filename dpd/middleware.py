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
