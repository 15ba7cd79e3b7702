"""DRF permission classes for the endpoints the upstream leaves open.

Secure by default: ingest needs staff or `dpd.add_dataproduct`, re-index
needs staff or `indexing.add_indexrun` (both granted to service accounts by
`manage.py create_service_account --can-ingest/--can-reindex`), and
metadata/download honour access groups. Two documented compatibility
settings restore the upstream's open behaviour for deployments whose
dashboard sends no credentials there (docs/security.md).
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.permissions import BasePermission

from dpd.access import OPEN_PRODUCT_ACCESS_ATTR

INGEST_PERMISSION = "dpd.add_dataproduct"
REINDEX_PERMISSION = "indexing.add_indexrun"


def may_manage(user, permission: str) -> bool:
    """Staff, or an active Django user holding `permission` (service accounts)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    return bool(user.is_staff or user.has_perm(permission))


class CanIngest(BasePermission):
    """POST /ingestnewdataproduct and /ingestnewmetadata."""

    message = f"Ingest needs a staff account or the {INGEST_PERMISSION} permission."

    def has_permission(self, request, view) -> bool:
        if settings.DPD_COMPAT_OPEN_MANAGEMENT:
            return True
        return may_manage(request.user, INGEST_PERMISSION)


class CanReindex(BasePermission):
    """GET /reindexdataproducts and /api/v1/index-runs/ (run logs name files,
    including those of access-group products)."""

    message = f"Re-indexing needs a staff account or the {REINDEX_PERMISSION} permission."

    def has_permission(self, request, view) -> bool:
        if settings.DPD_COMPAT_OPEN_MANAGEMENT:
            return True
        return may_manage(request.user, REINDEX_PERMISSION)


class ProductReadAccess(BasePermission):
    """POST /dataproductmetadata and /download: everyone may ask; what they get
    is decided by dpd.access. With DPD_COMPAT_OPEN_PRODUCT_ACCESS on, the
    request is marked so that `visible_products(request)` returns every
    product, as upstream (anyone who knows a uid may read it)."""

    def has_permission(self, request, view) -> bool:
        if settings.DPD_COMPAT_OPEN_PRODUCT_ACCESS:
            setattr(request, OPEN_PRODUCT_ACCESS_ATTR, True)
            setattr(request._request, OPEN_PRODUCT_ACCESS_ATTR, True)
        return True
