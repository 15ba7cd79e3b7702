"""The home page's route, mounted at the root by dpd/urls.py."""

from django.urls import path

from dpd.home import views

urlpatterns = [
    path("", views.home, name="home"),
]
