"""The `Link` header that points API clients at a product's page.

The API's product bodies are fixed by the SKA DPD API, so the human-readable
page is announced in a header (RFC 8288) rather than as a new body field.
"""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request

PRODUCT_PAGE_HEADER = OpenApiParameter(
    "Link",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    response=[200],
    description='The product\'s page with its annotations: `<URL>; rel="alternate"; '
    'type="text/html"`.',
)


def product_page_link(request: Request, uid: str) -> dict[str, str]:
    """Response headers linking to the product page of `uid`."""
    url = request.build_absolute_uri(reverse("product-page", kwargs={"uid": uid}))
    return {"Link": f'<{url}>; rel="alternate"; type="text/html"'}
