"""Routes of the search endpoints, at the root like the SKA DPD API; each also
answers with a trailing slash (`/status/` included, reference 1.1)."""

from django.urls import re_path

from dpd.api import search_views as views

urlpatterns = [
    re_path(r"^status/?$", views.StatusView.as_view(), name="status"),
    re_path(r"^dataproductsearch/?$", views.DataProductSearchView.as_view(), name="search"),
    re_path(r"^filterdataproducts/?$", views.FilterDataProductsView.as_view(), name="filter"),
    re_path(r"^muidatagridconfig/?$", views.MuiDataGridConfigView.as_view(), name="grid-config"),
    re_path(
        r"^(?P<lng>[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*)/humanreadable/?$",
        views.HumanReadableView.as_view(),
        name="humanreadable",
    ),
    re_path(r"^layout/?$", views.LayoutView.as_view(), name="layout"),
]
