"""Routes of the product endpoints, and of the OpenAPI schema and its viewers.

Served at the root like the SKA DPD API; each route also answers with a
trailing slash (APPEND_SLASH is off so POST bodies are never redirected away).
"""

from django.urls import re_path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularJSONAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)

from dpd.api import product_views as views


def route(name: str, view, url_name: str):
    return re_path(rf"^{name}/?$", view, name=url_name)


urlpatterns = [
    route("dataproductmetadata", views.DataProductMetadataView.as_view(), "dataproductmetadata"),
    route("download", views.DownloadView.as_view(), "download"),
    route("ingestnewdataproduct", views.IngestNewDataProductView.as_view(), "ingestnewdataproduct"),
    route("ingestnewmetadata", views.IngestNewMetadataView.as_view(), "ingestnewmetadata"),
    route("reindexdataproducts", views.ReindexDataProductsView.as_view(), "reindexdataproducts"),
    route("schema", SpectacularAPIView.as_view(), "schema"),
    route("openapi.json", SpectacularJSONAPIView.as_view(), "openapi-json"),
    route("docs", SpectacularSwaggerView.as_view(url_name="openapi-json"), "swagger-ui"),
    route("redoc", SpectacularRedocView.as_view(url_name="openapi-json"), "redoc"),
]
