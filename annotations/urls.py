"""Server-rendered pages, mounted under /products/ (dpd/urls.py)."""

import uuid

from django.contrib.auth import views as auth_views
from django.urls import path, register_converter

from annotations import views


class AnyUuidConverter:
    """A uid as the API takes it: 32 hex digits, hyphens optional, any case
    (Django's `uuid` converter takes only the lowercase hyphenated form)."""

    regex = "[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"

    def to_python(self, value: str) -> uuid.UUID:
        return uuid.UUID(value)

    def to_url(self, value: uuid.UUID) -> str:
        return str(value)


register_converter(AnyUuidConverter, "anyuuid")

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="annotations/login.html", next_page="annotations-recent"
        ),
        name="pages-login",
    ),
    path("logout/", views.LogoutPage.as_view(), name="pages-logout"),
    path("annotations/recent/", views.recent_annotations, name="annotations-recent"),
    path("annotations/<int:annotation_id>/edit/", views.annotation_edit, name="annotation-edit"),
    path("<anyuuid:uid>/", views.product_page, name="product-page"),
    path("<anyuuid:uid>/annotations/", views.annotation_add, name="annotation-add"),
]
