"""Server-rendered pages, mounted under /products/ (dpd/urls.py)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from annotations import views

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="annotations/login.html", next_page="annotations-recent"
        ),
        name="pages-login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="pages-login"), name="pages-logout"),
    path("annotations/recent/", views.recent_annotations, name="annotations-recent"),
    path("annotations/<int:annotation_id>/edit/", views.annotation_edit, name="annotation-edit"),
    path("<uuid:uid>/", views.product_page, name="product-page"),
    path("<uuid:uid>/annotations/", views.annotation_add, name="annotation-add"),
]
