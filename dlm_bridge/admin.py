"""Read-only admin of the DLM's items, with where each copy lives.

The DLM's tables are read through the `dlm` alias (dlm_bridge.router); no
add, change or delete is offered, and the router refuses them anyway.
"""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied

from dlm_bridge.models import DataItem, Location, Storage, SyncState


class ReadOnlyAdmin(admin.ModelAdmin):
    # The admin opens a write transaction for any POST before it checks
    # permissions; the router refuses that for the DLM's models (a 500), so
    # a POST is refused here first, as the admin refuses what may not be done.
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method not in ("GET", "HEAD", "OPTIONS", "TRACE"):
            raise PermissionDenied
        return super().changeform_view(request, object_id, form_url, extra_context)

    def delete_view(self, request, object_id, extra_context=None):
        if request.method not in ("GET", "HEAD", "OPTIONS", "TRACE"):
            raise PermissionDenied
        return super().delete_view(request, object_id, extra_context)

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(DataItem)
class DataItemAdmin(ReadOnlyAdmin):
    list_display = (
        "item_name",
        "uid",
        "oid",
        "item_state",
        "item_type",
        "storage",
        "location",
        "uid_creation",
    )
    list_filter = ("item_state", "item_type", "storage", "storage__location")
    list_select_related = ("storage__location",)
    search_fields = ("item_name", "=uid", "=oid")
    ordering = ("-uid_creation", "uid")
    show_full_result_count = False

    @admin.display(description="location")
    def location(self, item: DataItem) -> str:
        location = item.storage.location if item.storage is not None else None
        return str(location) if location is not None else "-"


@admin.register(Storage)
class StorageAdmin(ReadOnlyAdmin):
    list_display = (
        "storage_name",
        "storage_type",
        "storage_interface",
        "storage_phase",
        "location",
        "storage_available",
        "storage_retired",
    )
    list_filter = ("storage_type", "storage_interface", "location")
    list_select_related = ("location",)


@admin.register(Location)
class LocationAdmin(ReadOnlyAdmin):
    list_display = (
        "location_name",
        "location_type",
        "location_country",
        "location_city",
        "location_facility",
    )
    list_filter = ("location_type", "location_country")


@admin.register(SyncState)
class SyncStateAdmin(ReadOnlyAdmin):
    list_display = (
        "finished_at",
        "succeeded_at",
        "items",
        "written",
        "removed",
        "skipped",
        "error",
    )
