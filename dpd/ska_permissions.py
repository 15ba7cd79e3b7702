"""Client of the SKA permissions API, which resolves dashboard bearer tokens.

The dashboard signs users in with MS Entra ID and sends their token; the
upstream API never validates it itself but asks the permissions API for the
user's group ids and profile (reference 1.6). We do the same, with a short
timeout and a cache keyed by a hash of the token: raw tokens are never stored.
Any failure (down, slow, an error status, a reply of the wrong shape) means
"no answer", so a caller degrades to anonymous instead of getting a 500.
"""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.error
import urllib.request
from http.client import HTTPException
from typing import Any

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

GROUPS_PATH = "/v1/getusergroupids"
PROFILE_PATH = "/v2/user/profile"
# Replies are a few hundred bytes; a reply larger than this is garbage.
MAX_REPLY_BYTES = 256 * 1024
MAX_PRINCIPAL_LENGTH = 255
# The permissions API is an in-cluster service: environment proxies must not
# reroute tokens through a forward proxy.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def token_fingerprint(token: str) -> str:
    """The cache key part for a token: a hash, so the cache never holds a credential."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _get_json(path: str, token: str) -> Any | None:
    """GET one permissions API resource with the caller's bearer token; None on any failure."""
    url = settings.SKA_PERMISSIONS_API_HOST.rstrip("/") + path
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
    )
    try:
        with _opener.open(request, timeout=settings.SKA_PERMISSIONS_API_TIMEOUT_SECONDS) as reply:
            body = reply.read(MAX_REPLY_BYTES + 1)
    except urllib.error.HTTPError as exc:
        # 401/403 is the usual answer for an expired or foreign token: not worth a warning.
        logger.info("permissions API %s answered %s", path, exc.code)
        return None
    except (OSError, HTTPException, ValueError) as exc:
        logger.warning("permissions API %s unreachable: %s", path, exc)
        return None
    if len(body) > MAX_REPLY_BYTES:
        logger.warning("permissions API %s reply is larger than %d bytes", path, MAX_REPLY_BYTES)
        return None
    try:
        return json.loads(body)
    except ValueError:
        logger.warning("permissions API %s reply is not JSON", path)
        return None


def _parse_groups(reply: Any) -> frozenset[str] | None:
    groups = reply.get("user_groups") if isinstance(reply, dict) else None
    if not isinstance(groups, list) or not all(isinstance(group, str) for group in groups):
        return None
    # "" is never a group anybody is in: it hides a product from everyone.
    return frozenset(group for group in groups if group)


def _parse_principal(reply: Any) -> str | None:
    profile = reply.get("user_profile") if isinstance(reply, dict) else None
    principal = profile.get("userPrincipalName") if isinstance(profile, dict) else None
    if not isinstance(principal, str) or not principal.strip():
        return None
    if len(principal) > MAX_PRINCIPAL_LENGTH or "\x00" in principal:
        return None
    return principal.strip()


def _cached(kind: str, token: str, fetch) -> Any | None:
    key = f"dpd:ska-permissions:{kind}:{token_fingerprint(token)}"
    hit = cache.get(key)
    if hit is not None:
        return hit
    value = fetch()
    # Only answers are cached: a failure is retried on the next request.
    if value is not None and settings.SKA_PERMISSIONS_CACHE_SECONDS > 0:
        cache.set(key, value, settings.SKA_PERMISSIONS_CACHE_SECONDS)
    return value


def user_groups(token: str) -> frozenset[str] | None:
    """The token holder's group ids; None when the API gave no usable answer."""
    groups = _cached("groups", token, lambda: _parse_groups(_get_json(GROUPS_PATH, token)))
    return frozenset(groups) if groups is not None else None


def user_principal_name(token: str) -> str | None:
    """The token holder's userPrincipalName (annotation author); None without an answer."""
    return _cached("profile", token, lambda: _parse_principal(_get_json(PROFILE_PATH, token)))
