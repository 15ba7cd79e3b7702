"""DRF authentication classes: who is calling.

Four ways in, each optional (docs/configuration.md says how to turn each on):

- Django sessions (admin, pages): DRF's SessionAuthentication, always on;
  CSRF is checked except on the POSTs that only read (ReadOnlyPost views).
- Our API tokens (scripts, service accounts): `Authorization: Token <key>`,
  made by `manage.py create_service_account`. A token of a deleted or
  inactive user is refused with 401: a script should learn its key is dead.
- The SKA dashboard's bearer token, resolved to group ids and a user principal
  name through the SKA permissions API. As upstream, a bad or unresolvable
  bearer token is simply no identity (never a 401, never a 500).
- A trusted header set by an authenticating proxy, honoured only when the
  connection comes from one of TRUSTED_PROXY_ADDRESSES.

The dashboard and proxy identities have no Django user row: they are an
`ExternalUser`, which carries its groups and principal name for dpd.access.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from functools import cached_property

from django.conf import settings
from drf_spectacular import authentication as drf_spectacular_authentication
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import (
    BaseAuthentication,
    SessionAuthentication,
    TokenAuthentication,
    get_authorization_header,
)

from dpd import ska_permissions

logger = logging.getLogger(__name__)

# A token longer than this is not one the permissions API ever issued.
MAX_BEARER_TOKEN_LENGTH = 16 * 1024


class ExternalUser:
    """A caller identified outside Django (dashboard token, auth proxy).

    Quacks like a Django user where DRF and templates look (authenticated,
    never staff, no Django permissions), and carries what dpd.access needs:
    `access_groups` and `principal_name`.
    """

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(
        self,
        *,
        source: str,
        access_groups: frozenset[str],
        principal: Callable[[], str | None] | str | None,
    ):
        self.source = source
        self.access_groups = access_groups
        self._principal = principal

    @cached_property
    def principal_name(self) -> str | None:
        # Looked up only when needed (annotations): listing products needs groups only.
        return self._principal() if callable(self._principal) else self._principal

    def get_username(self) -> str:
        return self.principal_name or ""

    def has_perm(self, perm: str, obj=None) -> bool:
        return False

    def has_perms(self, perm_list, obj=None) -> bool:
        return False

    def has_module_perms(self, app_label: str) -> bool:
        return False

    def __str__(self) -> str:
        return self.principal_name or f"{self.source} caller"


class ReadOnlyPost:
    """Mark of a view whose POST only carries a query body and changes nothing
    (search, filter, metadata, download)."""

    reads_only = True


class SessionAuthenticationReadsWithoutCsrf(SessionAuthentication):
    """Django sessions, with CSRF checked on every state-changing request but
    not on the POSTs that only read.

    The dashboard, served from the same site, posts its searches with the
    browser's cookies and no CSRF token; a user who had signed in to the
    product pages or the admin would get 403 on every grid refresh. A
    cross-site page can make such a request but cannot read its answer (the
    same-origin policy; CORS admits only the dashboard's origins), and the
    request changes nothing, so there is nothing for CSRF to protect.
    """

    def enforce_csrf(self, request) -> None:
        view = (getattr(request, "parser_context", None) or {}).get("view")
        if getattr(view, "reads_only", False):
            return
        super().enforce_csrf(request)


class ServiceTokenAuthentication(TokenAuthentication):
    """DRF tokens (`Authorization: Token <key>`), switchable with DPD_AUTH_TOKENS."""

    def authenticate(self, request):
        if not settings.DPD_AUTH_TOKENS:
            return None
        return super().authenticate(request)


def bearer_token(request) -> str | None:
    """The token of a header that is exactly `Bearer <token>` (any case); else None."""
    try:
        parts = get_authorization_header(request).decode("ascii").split()
    except UnicodeDecodeError:
        return None
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    token = parts[1]
    if len(token) > MAX_BEARER_TOKEN_LENGTH:
        return None
    return token


class DashboardBearerAuthentication(BaseAuthentication):
    """The SKA dashboard's `Authorization: Bearer <token>`, resolved through the
    SKA permissions API (SKA_PERMISSIONS_API_HOST; empty turns it off)."""

    def authenticate(self, request):
        if not settings.SKA_PERMISSIONS_API_HOST:
            return None
        token = bearer_token(request)
        if token is None:
            return None
        groups = ska_permissions.user_groups(token)
        if groups is None:
            # Upstream treats an unresolvable token as no groups; so do we, quietly.
            return None
        user = ExternalUser(
            source="dashboard",
            access_groups=groups,
            principal=lambda: ska_permissions.user_principal_name(token),
        )
        return (user, None)


def _parse_networks(values: list[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return tuple(ipaddress.ip_network(value, strict=False) for value in values)


def is_trusted_proxy(remote_addr: str | None) -> bool:
    """Whether the connection comes from a configured authenticating proxy."""
    if not remote_addr or not settings.TRUSTED_PROXY_ADDRESSES:
        return False
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    return any(address in network for network in _parse_networks(settings.TRUSTED_PROXY_ADDRESSES))


def _meta_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


class TrustedHeaderAuthentication(BaseAuthentication):
    """User and groups from headers set by an authenticating proxy.

    Off unless TRUSTED_PROXY_ADDRESSES is set; honoured only for connections
    from those addresses, so a client that reaches us directly cannot claim a
    user by sending the header itself.
    """

    def authenticate(self, request):
        if not settings.TRUSTED_PROXY_ADDRESSES:
            return None
        meta = request.META
        username = meta.get(_meta_key(settings.TRUSTED_USER_HEADER), "").strip()
        if not username:
            return None
        remote_addr = meta.get("REMOTE_ADDR")
        if not is_trusted_proxy(remote_addr):
            logger.warning(
                "ignoring %s from %s: not a trusted proxy address",
                settings.TRUSTED_USER_HEADER,
                remote_addr,
            )
            return None
        if len(username) > ska_permissions.MAX_PRINCIPAL_LENGTH or "\x00" in username:
            # It would become an annotation's author, which holds 255 characters.
            logger.warning("ignoring %s: not a usable user name", settings.TRUSTED_USER_HEADER)
            return None
        raw_groups = meta.get(_meta_key(settings.TRUSTED_GROUPS_HEADER), "")
        groups = frozenset(group.strip() for group in raw_groups.split(",") if group.strip())
        user = ExternalUser(source="proxy", access_groups=groups, principal=username)
        return (user, None)


class DashboardBearerScheme(OpenApiAuthenticationExtension):
    target_class = DashboardBearerAuthentication
    name = "dashboardBearer"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "The SKA dashboard's MS Entra token, resolved through the SKA "
            "permissions API; an unresolvable token counts as no credentials.",
        }


class TrustedHeaderScheme(OpenApiAuthenticationExtension):
    target_class = TrustedHeaderAuthentication
    name = "trustedProxyHeader"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": settings.TRUSTED_USER_HEADER,
            "description": "Set by an authenticating proxy; honoured only from "
            "TRUSTED_PROXY_ADDRESSES.",
        }


class SessionCookieScheme(drf_spectacular_authentication.SessionScheme):
    """drf-spectacular's cookieAuth for our session class (it matches the exact class)."""

    target_class = SessionAuthenticationReadsWithoutCsrf
