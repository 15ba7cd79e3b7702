from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("dpd.home.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("indexing.api.urls")),
    path("products/", include("annotations.urls")),
    path("", include("annotations.api.urls")),
    path("", include("dpd.api.urls")),
]

handler400 = "dpd.api.exceptions.json_bad_request"
handler403 = "dpd.api.exceptions.json_permission_denied"
handler404 = "dpd.api.exceptions.json_not_found"
handler500 = "dpd.api.exceptions.json_server_error"
