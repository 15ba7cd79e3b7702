"""Annotation API routes, at the root like every SKA DPD API route; a trailing
slash is accepted too (reference 1.1)."""

from django.urls import re_path

from annotations.api.views import AnnotationListView, AnnotationSaveView

urlpatterns = [
    re_path(r"^annotation/?$", AnnotationSaveView.as_view(), name="annotation-save"),
    re_path(
        r"^annotations/(?P<data_product_uid>[^/]+)/?$",
        AnnotationListView.as_view(),
        name="annotations-list",
    ),
]
