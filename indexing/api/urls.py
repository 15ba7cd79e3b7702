from django.urls import path

from indexing.api import views

urlpatterns = [
    path("index-runs/", views.IndexRunList.as_view(), name="index-run-list"),
    path("index-runs/<int:pk>/", views.IndexRunDetail.as_view(), name="index-run-detail"),
]
