"""The curators' view of the catalogue: scan, filter and search products, read
their metadata. Rows come from the volume or the ingest API, so nothing here
edits a product: a change would be overwritten by the next re-index."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db.models.fields.json import KT
from django.http import HttpRequest
from django.urls import NoReverseMatch
from django.utils.html import format_html

from dpd.models import DataProduct, Flow


def _obscore(product: DataProduct, key: str) -> Any:
    obscore = product.metadata.get("obscore") if isinstance(product.metadata, dict) else None
    return obscore.get(key) if isinstance(obscore, dict) else None


@admin.register(DataProduct)
class DataProductAdmin(admin.ModelAdmin):
    list_display = [
        "execution_block",
        "date_created",
        "product_type",
        "instrument",
        "access_group",
        "source",
        "dataproduct_file",
    ]
    list_filter = ["access_group", "source"]
    date_hierarchy = "date_created"
    search_fields = ["execution_block", "uid", "metadata_file"]
    ordering = ["-date_created", "metadata_file", "uid"]
    list_per_page = 50
    fieldsets = [
        (
            None,
            {"fields": ["execution_block", "date_created", "access_group", "product_page"]},
        ),
        (
            "Identifiers",
            {"fields": ["uid", "metadata_file", "dataproduct_file", "source"]},
        ),
        ("Metadata", {"fields": ["pretty_metadata"]}),
        ("Change detection", {"fields": ["file_mtime_ns", "file_size", "indexed_at"]}),
    ]
    readonly_fields = [
        "execution_block",
        "date_created",
        "access_group",
        "product_page",
        "uid",
        "metadata_file",
        "dataproduct_file",
        "source",
        "pretty_metadata",
        "file_mtime_ns",
        "file_size",
        "indexed_at",
    ]

    @admin.display(description="product type", ordering=KT("metadata__obscore__dataproduct_type"))
    def product_type(self, product: DataProduct) -> Any:
        return _obscore(product, "dataproduct_type")

    @admin.display(description="instrument", ordering=KT("metadata__obscore__instrument_name"))
    def instrument(self, product: DataProduct) -> Any:
        return _obscore(product, "instrument_name")

    @admin.display(description="metadata")
    def pretty_metadata(self, product: DataProduct) -> str:
        text = json.dumps(product.metadata, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)

    @admin.display(description="product page")
    def product_page(self, product: DataProduct) -> str:
        url = self.view_on_site(product)
        return format_html('<a href="{}">{}</a>', url, url) if url else "-"

    def view_on_site(self, product: DataProduct) -> str | None:
        # The page belongs to the annotations app; without it, no link.
        try:
            return product.get_absolute_url()
        except NoReverseMatch:
            return None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Flow)
class FlowAdmin(admin.ModelAdmin):
    """SDP flows as the watcher last saw them in etcd: read-only, since the
    next event or snapshot would overwrite any edit (dpd.sdp_watcher)."""

    list_display = [
        "key",
        "execution_block",
        "processing_block",
        "kind",
        "status",
        "pb_status",
        "last_updated",
    ]
    list_filter = ["status", "kind"]
    search_fields = ["execution_block", "processing_block", "key"]
    ordering = ["key"]
    list_per_page = 100

    def get_readonly_fields(self, request: HttpRequest, obj: Flow | None = None) -> list[str]:
        return [field.name for field in Flow._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Flow | None = None) -> bool:
        return request.method in ("GET", "HEAD") and super().has_view_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Flow | None = None) -> bool:
        return False
