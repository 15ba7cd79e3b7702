"""Which products a request may see: the one place visibility is decided.

A product with an access_group is visible only to members of the group of
that name, and to staff; to everyone else it does not exist.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet

from dpd.models import DataProduct


def caller_groups(request) -> frozenset[str] | None:
    """The caller's group names; None means "sees everything" (staff)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return frozenset()
    if user.is_staff:
        return None
    return frozenset(user.groups.values_list("name", flat=True))


def visible_to(groups: frozenset[str] | None) -> Q:
    if groups is None:
        return Q()
    return Q(access_group__isnull=True) | Q(access_group__in=groups)


def visible_products(request) -> QuerySet[DataProduct]:
    return DataProduct.objects.filter(visible_to(caller_groups(request)))


def principal_name(request) -> str | None:
    """The caller's user principal name for annotations; None without an identity.

    Never taken from a request body. (The access issue resolves dashboard bearer
    tokens to the permissions API's userPrincipalName here.)
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return user.email or user.get_username()
