"""The real routes plus one that fails, to see what a crash looks like to a client."""

from django.urls import path
from rest_framework.views import APIView

from dpd.urls import handler400, handler403, handler404, handler500
from dpd.urls import urlpatterns as real_urls

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]


class Crash(APIView):
    def get(self, request):
        raise RuntimeError("secret internals: /etc/dpd/password=hunter2")


def plain_crash(request):
    raise RuntimeError("secret internals: /etc/dpd/password=hunter2")


urlpatterns = [
    path("test-crash-api", Crash.as_view()),
    path("test-crash-plain", plain_crash),
    *real_urls,
]
