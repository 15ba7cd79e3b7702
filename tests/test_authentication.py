"""Who is calling: dashboard bearer tokens (resolved through a local stand-in
for the SKA permissions API), service-account tokens, trusted proxy headers.

Visibility is probed through POST /dataproductmetadata (200 for a product the
caller may see, 404 otherwise) and the annotation author through
POST /annotation + GET /annotations/<uid>.
"""

from __future__ import annotations

import socket
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.access_support import OTHER, TEAM, FakePermissionsApi, catalogue, service_account_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(settings):
    fake = FakePermissionsApi().start()
    settings.SKA_PERMISSIONS_API_HOST = fake.url
    settings.SKA_PERMISSIONS_API_TIMEOUT_SECONDS = 0.3
    settings.SKA_PERMISSIONS_CACHE_SECONDS = 60
    yield fake
    fake.stop()


@pytest.fixture
def products(sample_volume, settings):
    return catalogue(sample_volume, settings.PERSISTENT_STORAGE_PATH)


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def sees(client: APIClient, product) -> bool:
    response = client.post("/dataproductmetadata", {"uid": str(product.uid)}, format="json")
    assert response.status_code in (200, 404), response.content
    return response.status_code == 200


# --- Dashboard bearer tokens ------------------------------------------------------


def test_a_dashboard_token_shows_the_products_of_the_users_groups(api, products):
    client = bearer(api.add("t1", groups=[TEAM], principal="first.last@skao.int"))
    assert sees(client, products["open"])
    assert sees(client, products["team"])
    assert not sees(client, products["other"])
    assert not sees(client, products["nobody"])


def test_a_lowercase_bearer_keyword_is_accepted_as_upstream(api, products):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="bearer " + api.add("t1", groups=[TEAM]))
    assert sees(client, products["team"])


def test_the_permissions_api_is_asked_once_per_token_while_the_answer_is_cached(api, products):
    client = bearer(api.add("t1", groups=[TEAM], principal="first.last@skao.int"))
    for _ in range(3):
        assert sees(client, products["team"])
    assert api.calls("/v1/getusergroupids") == 1
    # Listing needs groups only: the profile is fetched when an author is needed.
    assert api.calls("/v2/user/profile") == 0


def test_a_cached_answer_expires_after_the_configured_seconds(api, products, settings):
    settings.SKA_PERMISSIONS_CACHE_SECONDS = 0
    client = bearer(api.add("t1", groups=[TEAM]))
    assert sees(client, products["team"])
    assert sees(client, products["team"])
    assert api.calls("/v1/getusergroupids") == 2


def test_the_cache_never_holds_the_raw_token(api, products):
    token = api.add("a-very-recognisable-token-value", groups=[TEAM], principal="x@skao.int")
    client = bearer(token)
    assert sees(client, products["team"])
    client.post(
        "/annotation",
        {"data_product_uid": str(products["team"].uid), "annotation_text": "hello"},
        format="json",
    )
    stored = repr(list(cache._cache.items()))  # LocMemCache: keys and pickled values
    assert "recognisable" not in stored
    assert api.calls("/v2/user/profile") == 1


@pytest.mark.parametrize("fault", ["expired", "500", "garbage", "wrong-shape", "slow"])
def test_a_failed_lookup_means_no_groups_never_an_error(api, products, fault):
    client = bearer(api.add("t1", groups=[TEAM], principal="x@skao.int", fault=fault))
    assert sees(client, products["open"])
    assert not sees(client, products["team"])


def test_an_unreachable_permissions_api_means_no_groups(api, products, settings):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        settings.SKA_PERMISSIONS_API_HOST = f"http://127.0.0.1:{probe.getsockname()[1]}"
    client = bearer(api.add("t1", groups=[TEAM]))
    assert sees(client, products["open"])
    assert not sees(client, products["team"])


def test_a_failed_lookup_is_asked_again_on_the_next_request(api, products):
    token = api.add("t1", groups=[TEAM], fault="500")
    client = bearer(token)
    assert not sees(client, products["team"])
    api.tokens[token].fault = None
    assert sees(client, products["team"])


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer t1 extra",
        "Basic t1",
        "t1",
        "Bearer: t1",
        "Bearer\u00a0t1",
    ],
)
def test_a_header_that_is_not_exactly_bearer_and_a_token_counts_as_no_token(api, products, header):
    api.add("t1", groups=[TEAM])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header.encode("utf-8").decode("latin-1"))
    assert sees(client, products["open"])
    assert not sees(client, products["team"])
    assert api.calls("/v1/getusergroupids") == 0


def test_a_permissions_api_group_named_empty_does_not_unlock_hidden_products(api, products):
    client = bearer(api.add("t1", groups=["", TEAM]))
    assert not sees(client, products["nobody"])


def test_bearer_tokens_are_ignored_when_no_permissions_api_is_configured(api, products, settings):
    settings.SKA_PERMISSIONS_API_HOST = ""
    client = bearer(api.add("t1", groups=[TEAM]))
    assert not sees(client, products["team"])
    assert api.requests == []


def test_the_annotation_author_is_the_principal_name_from_the_profile(api, products):
    client = bearer(api.add("t1", groups=[TEAM], principal="first.last@skao.int"))
    uid = str(products["team"].uid)
    response = client.post(
        "/annotation",
        {
            "data_product_uid": uid,
            "annotation_text": "RFI in scan 3",
            "user_principal_name": "someone.else@skao.int",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    listed = client.get(f"/annotations/{uid}")
    assert [row["user_principal_name"] for row in listed.json()] == ["first.last@skao.int"]


def test_a_token_whose_profile_cannot_be_fetched_cannot_annotate(api, products):
    token = api.add("t1", groups=[TEAM], principal=None)  # profile without a principal
    response = bearer(token).post(
        "/annotation",
        {"data_product_uid": str(products["open"].uid), "annotation_text": "hello"},
        format="json",
    )
    assert response.status_code == 401
    assert "detail" in response.json()


# --- Service-account tokens ---------------------------------------------------------


def token_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_a_service_account_sees_the_products_of_its_groups(products):
    client = token_client(service_account_token("pipeline", OTHER))
    assert sees(client, products["other"])
    assert not sees(client, products["team"])


def test_a_token_of_an_inactive_user_is_refused_with_401(products):
    key = service_account_token("pipeline", OTHER)
    User.objects.filter(username="pipeline").update(is_active=False)
    response = token_client(key).post(
        "/dataproductmetadata", {"uid": str(products["open"].uid)}, format="json"
    )
    assert response.status_code == 401
    assert response.json()["detail"] == "User inactive or deleted."


def test_a_token_of_a_deleted_user_is_refused_with_401(products):
    key = service_account_token("pipeline", OTHER)
    User.objects.filter(username="pipeline").delete()
    response = token_client(key).post(
        "/dataproductmetadata", {"uid": str(products["open"].uid)}, format="json"
    )
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid token."


def test_api_tokens_can_be_switched_off(products, settings):
    key = service_account_token("pipeline", OTHER)
    settings.DPD_AUTH_TOKENS = False
    client = token_client(key)
    assert not sees(client, products["other"])
    assert (
        client.post("/ingestnewmetadata", {"execution_block": "eb-x-20240101-1"}).status_code == 401
    )


def test_a_service_account_may_ingest_only_with_the_permission(products):
    body = {"execution_block": "eb-script-20240101-00001", "context": {}}
    without = token_client(service_account_token("reader", OTHER, ingest=False))
    refused = without.post("/ingestnewmetadata", body, format="json")
    assert refused.status_code == 403
    assert "dpd.add_dataproduct" in refused.json()["detail"]
    allowed = token_client(service_account_token("writer", OTHER)).post(
        "/ingestnewmetadata", body, format="json"
    )
    assert allowed.status_code == 201, allowed.content


def test_re_running_the_command_updates_groups_and_keeps_the_token(products):
    first = service_account_token("pipeline", OTHER)
    second = service_account_token("pipeline", TEAM)
    assert first == second
    client = token_client(second)
    assert sees(client, products["team"])
    assert not sees(client, products["other"])


def test_rotating_the_token_invalidates_the_old_one(products):
    old = service_account_token("pipeline", OTHER)
    out = StringIO()
    call_command(
        "create_service_account",
        "pipeline",
        "--group",
        OTHER,
        "--rotate-token",
        stdout=out,
        stderr=StringIO(),
    )
    new = out.getvalue().strip()
    assert new != old
    assert Token.objects.filter(key=old).count() == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["pipeline", "--group", ""], "cannot be empty"),
        (["  "], "needs a name"),
        (["admin-person"], "staff account"),
    ],
)
def test_the_command_refuses_bad_requests_with_a_clear_error(db, args, message):
    User.objects.create_user("admin-person", is_staff=True)
    with pytest.raises(CommandError, match=message):
        call_command("create_service_account", *args, stdout=StringIO(), stderr=StringIO())
    assert not User.objects.filter(username="pipeline").exists()


# --- Trusted proxy headers ------------------------------------------------------------


@pytest.fixture
def proxy_mode(settings):
    settings.TRUSTED_PROXY_ADDRESSES = ["10.0.0.0/8", "127.0.0.1"]
    settings.TRUSTED_USER_HEADER = "X-Forwarded-User"
    settings.TRUSTED_GROUPS_HEADER = "X-Forwarded-Groups"


def proxied(remote_addr: str) -> APIClient:
    client = APIClient(REMOTE_ADDR=remote_addr)
    client.credentials(
        HTTP_X_FORWARDED_USER="first.last@skao.int",
        HTTP_X_FORWARDED_GROUPS=f"unrelated, {TEAM}",
    )
    return client


def test_a_trusted_proxy_passes_the_user_and_groups_in_headers(proxy_mode, products):
    client = proxied("10.1.2.3")
    assert sees(client, products["team"])
    assert not sees(client, products["other"])
    uid = str(products["team"].uid)
    created = client.post(
        "/annotation", {"data_product_uid": uid, "annotation_text": "via proxy"}, format="json"
    )
    assert created.status_code == 201, created.content
    assert client.get(f"/annotations/{uid}").json()[0]["user_principal_name"] == (
        "first.last@skao.int"
    )


def test_headers_from_an_address_that_is_not_a_proxy_are_ignored(proxy_mode, products):
    client = proxied("203.0.113.9")
    assert sees(client, products["open"])
    assert not sees(client, products["team"])
    refused = client.post(
        "/annotation",
        {"data_product_uid": str(products["open"].uid), "annotation_text": "spoofed"},
        format="json",
    )
    assert refused.status_code == 401


def test_trusted_headers_are_ignored_when_the_mode_is_off(products):
    client = proxied("127.0.0.1")
    assert not sees(client, products["team"])


def test_a_forwarded_for_header_naming_a_proxy_does_not_make_a_client_trusted(proxy_mode, products):
    client = proxied("203.0.113.9")
    client.credentials(
        HTTP_X_FORWARDED_USER="first.last@skao.int",
        HTTP_X_FORWARDED_GROUPS=TEAM,
        HTTP_X_FORWARDED_FOR="10.1.2.3",
        HTTP_X_REAL_IP="10.1.2.3",
        HTTP_FORWARDED="for=10.1.2.3",
    )
    assert not sees(client, products["team"])


def test_a_proxy_user_name_too_long_to_be_an_author_is_no_identity(proxy_mode, products):
    client = APIClient(REMOTE_ADDR="10.1.2.3")
    client.credentials(HTTP_X_FORWARDED_USER="x" * 300 + "@skao.int", HTTP_X_FORWARDED_GROUPS=TEAM)
    response = client.post(
        "/annotation",
        {"data_product_uid": str(products["open"].uid), "annotation_text": "long name"},
        format="json",
    )
    assert response.status_code == 401
    assert not sees(client, products["team"])
