"""Which products a request may see: the one place visibility is decided.

A product with an access_group is visible only to members of the group of
that name, and to staff; to everyone else it does not exist. The caller's
groups come from wherever the caller was authenticated: Django group names
for session and API-token users (service accounts), the permissions API's
group ids for dashboard bearer tokens, the proxy's header for trusted-header
callers. "" is never one of them, so a product whose access_group is ""
is hidden from everyone except staff (reference 1.6).

DPD_COMPAT_OPEN_PRODUCT_ACCESS (off by default) restores the upstream's open
/dataproductmetadata and /download: a view that wants that behaviour lists
dpd.permissions.ProductReadAccess, which marks the request so that
`visible_products` returns every product for that request only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import models
from django.db.models import Q, QuerySet

from dpd.authentication import ExternalUser
from dpd.models import DataProduct

# Set on a request by dpd.permissions.ProductReadAccess when the compatibility
# setting opens product reads; never set from anything the client sends.
OPEN_PRODUCT_ACCESS_ATTR = "_dpd_open_product_access"

# Which sources no page may show now (include_retired -> sources): the DLM
# bridge registers its own from its AppConfig.ready() (the DLM's rows while
# it does not answer), so that pages outside the API, which may not import
# it, leave out what the API leaves out.
HiddenSources = Callable[..., frozenset[str]]
_hidden_sources: HiddenSources | None = None


def set_hidden_sources(provider: HiddenSources | None) -> None:
    """Register the DLM bridge's hidden sources (None removes them)."""
    global _hidden_sources
    _hidden_sources = provider


def hidden_sources_now(*, include_retired: bool = False) -> frozenset[str]:
    """The sources to leave out of a page now; `include_retired` keeps the
    DLM's deleted and expired items (a lookup by uid, as /dataproductmetadata)."""
    if _hidden_sources is None:
        return frozenset()
    return _hidden_sources(include_retired=include_retired)


def caller_groups(request) -> frozenset[str] | None:
    """The caller's group names; None means "sees everything" (staff)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_active:
        return frozenset()
    if isinstance(user, ExternalUser):
        return user.access_groups
    if user.is_staff:
        return None
    return frozenset(name for name in user.groups.values_list("name", flat=True) if name)


def visible_to(groups: frozenset[str] | None) -> Q:
    """Products visible to a caller in `groups` (None: staff, everything)."""
    if groups is None:
        return Q()
    if not groups:  # the anonymous majority: no empty IN () for the ORM to drop
        return Q(access_group__isnull=True)
    return Q(access_group__isnull=True) | Q(access_group__in=groups)


def is_open_product_access(request) -> bool:
    return bool(getattr(request, OPEN_PRODUCT_ACCESS_ATTR, False))


def visible_products(
    request, *, hidden_sources: frozenset[str] = frozenset()
) -> QuerySet[DataProduct]:
    """Every product this request may see; use it for every lookup, list and count.

    A product outside it answers exactly like a missing one (404, same body).
    `hidden_sources`: rows the caller leaves out whoever asks (the DLM's while
    it does not answer, dlm_bridge.services.hidden_sources).
    """
    if is_open_product_access(request):
        products = DataProduct.objects.all()
    else:
        products = DataProduct.objects.filter(visible_to(caller_groups(request)))
    hidden = sorted(
        {*hidden_sources, *([] if sees_placeholders(request) else [DataProduct.Source.SDP])}
    )
    if len(hidden) == 1:
        products = products.exclude(source=hidden[0])
    elif hidden:
        products = products.exclude(source__in=hidden)
    return products


def sees_placeholders(request) -> bool:
    """SDP placeholder rows carry no access group: every caller sees them, as
    upstream, unless SDP_PLACEHOLDERS_SIGNED_IN_ONLY keeps them for callers
    who signed in (any identity: session, token, bearer, trusted header)."""
    if not settings.SDP_PLACEHOLDERS_SIGNED_IN_ONLY:
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_active)


def can_see(request, product: DataProduct) -> bool:
    """Whether one already-loaded product is visible to the request."""
    if is_open_product_access(request):
        return True
    groups = caller_groups(request)
    return groups is None or product.access_group is None or product.access_group in groups


class SignIn(models.TextChoices):
    """How a caller signed in: each gives its own kind of subject."""

    # A Django user (session or API token): the subject is the account's id,
    # so the same account is the same author whichever of the two it used.
    ACCOUNT = "account", "Django account (session or API token)"
    # The SKA dashboard's bearer token: the userPrincipalName the SKA
    # permissions API gives for it (unique in the MS Entra tenant).
    DASHBOARD = "dashboard", "Dashboard token (SKA permissions API)"
    # A trusted authenticating proxy: the user header's value.
    PROXY = "proxy", "Trusted proxy header"


@dataclass(frozen=True)
class Identity:
    """Who is calling, as annotations record an author.

    `method` and `subject` together name one person; `name` is the principal
    name shown as the author (the upstream's user_principal_name). Two ways of
    signing in can give the same name (a service account named like a
    dashboard user), so rights follow the identity, never the name.
    """

    method: str
    subject: str
    name: str


def caller_identity(request) -> Identity | None:
    """The caller's identity; None without one (anonymous, or a dashboard
    token whose profile the permissions API did not give).

    Never taken from a request body: a dashboard caller's name comes from the
    permissions API profile, a proxy caller's from the trusted header, a
    Django user's is their email or username.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    if isinstance(user, ExternalUser):
        name = user.principal_name
        if name is None:
            return None
        return Identity(SignIn(user.source).value, name, name)
    return Identity(SignIn.ACCOUNT.value, str(user.pk), user.email or user.get_username())
