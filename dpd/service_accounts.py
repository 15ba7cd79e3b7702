"""Service accounts: Django users that scripts act as, with a DRF token.

A service account is an ordinary, password-less Django user: its groups
decide which access-group products it sees (group names are compared with
`context.access_group`, so use the MS Entra group id the metadata carries),
and two Django permissions let it ingest (`dpd.add_dataproduct`) or start a
re-index (`indexing.add_indexrun`).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from rest_framework.authtoken.models import Token

from dpd.permissions import INGEST_PERMISSION, REINDEX_PERMISSION


class ServiceAccountError(ValueError):
    """A service account request that cannot be carried out; the message says why."""


@dataclass(frozen=True)
class ServiceAccount:
    username: str
    token: str
    created: bool
    groups: tuple[str, ...]
    permissions: tuple[str, ...]


def _permission(dotted: str) -> Permission:
    app_label, codename = dotted.split(".", 1)
    try:
        return Permission.objects.get(content_type__app_label=app_label, codename=codename)
    except Permission.DoesNotExist:
        raise ServiceAccountError(
            f"permission {dotted} does not exist yet (run `manage.py migrate` first)"
        ) from None


@transaction.atomic
def service_account_create(
    name: str,
    *,
    groups: list[str],
    can_ingest: bool = False,
    can_reindex: bool = False,
    rotate_token: bool = False,
) -> ServiceAccount:
    """Create or update the account `name`: its groups and permissions become
    exactly those given; its token is kept unless `rotate_token`."""
    name = name.strip()
    if not name:
        raise ServiceAccountError("a service account needs a name")
    if any(not group.strip() for group in groups):
        raise ServiceAccountError('a group name cannot be empty ("" hides from everyone)')
    wanted = [
        perm
        for perm, on in ((INGEST_PERMISSION, can_ingest), (REINDEX_PERMISSION, can_reindex))
        if on
    ]
    permissions = [_permission(perm) for perm in wanted]

    User = get_user_model()
    user, created = User.objects.get_or_create(username=name)
    if created:
        user.set_unusable_password()
    elif user.is_staff or user.is_superuser:
        raise ServiceAccountError(f"{name} is a staff account, not a service account")
    user.is_active = True
    user.save()
    user.groups.set([Group.objects.get_or_create(name=group.strip())[0] for group in groups])
    user.user_permissions.set(permissions)
    if rotate_token:
        Token.objects.filter(user=user).delete()
    token, _ = Token.objects.get_or_create(user=user)
    return ServiceAccount(
        username=user.username,
        token=token.key,
        created=created,
        groups=tuple(sorted(group.strip() for group in groups)),
        permissions=tuple(wanted),
    )
