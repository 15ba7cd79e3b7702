"""Hostile input and production hardening: oversized bodies, password
guessing, floods, crashes, production settings, and search/filter input that
tries to reach the ORM as lookups or SQL."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pytest
import time_machine
from django.conf import settings as django_settings
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from dpd.models import DataProduct
from tests.access_support import TEAM, catalogue

pytestmark = pytest.mark.django_db


@pytest.fixture
def products(sample_volume, settings):
    return catalogue(sample_volume, settings.PERSISTENT_STORAGE_PATH)


def staff_client() -> APIClient:
    client = APIClient()
    client.force_login(User.objects.create_user("curator", is_staff=True))
    return client


# --- Oversized bodies -------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/dataproductsearch", "/filterdataproducts", "/ingestnewmetadata", "/annotation"]
)
def test_an_oversized_body_is_refused_with_413_naming_the_limit(settings, path):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    body = {"execution_block": "eb-big-20240101-00001", "padding": "x" * 8192}
    response = staff_client().post(path, body, format="json")
    assert response.status_code == 413
    assert "4096" in response.json()["detail"]
    assert not DataProduct.objects.filter(execution_block="eb-big-20240101-00001").exists()


def test_an_oversized_body_without_content_type_is_refused_too(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    response = APIClient().generic(
        "POST", "/dataproductsearch", json.dumps({"x": "y" * 8192}), content_type=""
    )
    assert response.status_code == 413


def test_a_body_within_the_limit_is_served(settings, products):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    response = APIClient().post("/dataproductsearch", {"key_value_pairs": []}, format="json")
    assert response.status_code == 200


def test_a_content_length_that_is_not_a_number_is_a_clear_400():
    response = APIClient().generic(
        "POST",
        "/dataproductsearch",
        b"{}",
        content_type="application/json",
        CONTENT_LENGTH="lots",
    )
    assert response.status_code == 400
    assert "Content-Length" in response.json()["detail"]


# --- Password guessing --------------------------------------------------------------


@pytest.fixture
def admin_user(db):
    return User.objects.create_superuser("admin", "admin@skao.int", "correct horse battery")


def login(client, password: str, path: str = "/admin/login/"):
    return client.post(path, {"username": "admin", "password": password, "next": "/admin/"})


@pytest.mark.parametrize("path", ["/admin/login/", "/products/login/"])
def test_password_guessing_is_refused_after_the_failure_limit(admin_user, settings, path):
    settings.DPD_LOGIN_FAILURE_LIMIT = 3
    settings.DPD_LOGIN_LOCKOUT_SECONDS = 300
    guesser = APIClient(REMOTE_ADDR="198.51.100.7")
    for guess in ("a", "b", "c"):
        assert login(guesser, guess, path).status_code == 200  # the form again, with an error
    refused = login(guesser, "correct horse battery", path)
    assert refused.status_code == 429
    assert refused["Retry-After"] == "300"
    assert "Too many failed logins" in refused.content.decode()
    # Someone else, elsewhere, can still sign in.
    assert (
        login(APIClient(REMOTE_ADDR="192.0.2.1"), "correct horse battery", path).status_code == 302
    )


def test_the_lockout_ends_after_the_configured_seconds(admin_user, settings):
    settings.DPD_LOGIN_FAILURE_LIMIT = 2
    settings.DPD_LOGIN_LOCKOUT_SECONDS = 300
    guesser = APIClient(REMOTE_ADDR="198.51.100.7")
    with time_machine.travel(dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC), tick=False) as clock:
        login(guesser, "a")
        login(guesser, "b")
        assert login(guesser, "correct horse battery").status_code == 429
        clock.shift(dt.timedelta(seconds=301))
        assert login(guesser, "correct horse battery").status_code == 302


def test_a_successful_login_clears_the_failures(admin_user, settings):
    settings.DPD_LOGIN_FAILURE_LIMIT = 2
    client = APIClient(REMOTE_ADDR="198.51.100.7")
    login(client, "wrong")
    assert login(client, "correct horse battery").status_code == 302
    client.logout()
    login(client, "wrong")
    assert login(client, "correct horse battery").status_code == 302


# --- Floods of anonymous requests ------------------------------------------------------


def test_anonymous_floods_are_throttled_with_429_and_retry_after(settings, products):
    settings.DPD_THROTTLE_ANON_RATE = "3/minute"
    client = APIClient()
    codes = [client.post("/dataproductsearch", {}, format="json").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    throttled = client.post("/dataproductsearch", {}, format="json")
    assert "detail" in throttled.json()
    assert int(throttled["Retry-After"]) > 0
    # The health probe and signed-in users are not throttled.
    assert client.get("/status").status_code == 200
    assert staff_client().post("/dataproductsearch", {}, format="json").status_code == 200


def test_a_forged_x_forwarded_for_does_not_escape_the_throttle(settings, products):
    settings.DPD_THROTTLE_ANON_RATE = "2/minute"
    codes = [
        APIClient(HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")
        .post("/dataproductsearch", {}, format="json")
        .status_code
        for n in range(3)
    ]
    assert codes == [200, 200, 429]


# --- Crashes show no internals ---------------------------------------------------------


@pytest.mark.urls("tests.hardening_urls")
@pytest.mark.parametrize("path", ["/test-crash-api", "/test-crash-plain"])
def test_a_crash_answers_a_plain_json_500_without_a_stack_trace(settings, path):
    settings.DEBUG = False
    client = APIClient(raise_request_exception=False)
    response = client.get(path, HTTP_ACCEPT="text/html")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error"}
    assert b"hunter2" not in response.content
    assert b"Traceback" not in response.content


def test_an_unknown_path_answers_json_404_not_a_debug_page(settings):
    settings.DEBUG = False
    response = APIClient().get("/no/such/page", HTTP_ACCEPT="text/html")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


# --- Production settings (each runs manage.py in a separate process) --------------------


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DPD_"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=django_settings.BASE_DIR,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION = {
    "DJANGO_ENV": "production",
    "DJANGO_SECRET_KEY": "k8Jq-3vX_pL0wZ9nR2tY7uB5cE1mH4aS6dF8gJ0kQ2xV9bN3zM7pL5rT1yW4eU6i",
    "DJANGO_ALLOWED_HOSTS": "dpd.example.org",
}


@pytest.mark.slow
def test_check_deploy_passes_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    # drf-spectacular's schema-introspection notes are the schema tests' business.
    warnings = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.startswith("?:") and "drf_spectacular." not in line
    ]
    assert warnings == [], result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "env, message",
    [
        ({"DJANGO_ENV": "production"}, "DJANGO_SECRET_KEY"),
        (
            {**PRODUCTION, "DJANGO_SECRET_KEY": "django-insecure-dpd-local-demo-key-change-me"},
            "DJANGO_SECRET_KEY",
        ),
        ({**PRODUCTION, "DJANGO_SECRET_KEY": "short"}, "DJANGO_SECRET_KEY"),
        ({**PRODUCTION, "DJANGO_DEBUG": "true"}, "DJANGO_DEBUG"),
        ({"DJANGO_ENV": "staging"}, "DJANGO_ENV"),
    ],
)
def test_production_refuses_to_start_without_a_real_secret_key_or_with_debug(env, message):
    result = manage("check", **env)
    assert result.returncode != 0
    assert message in result.stderr
    assert "ImproperlyConfigured" in result.stderr


@pytest.mark.slow
def test_a_fresh_clone_runs_with_no_configuration_and_debug_off():
    result = manage("shell", "-c", "from django.conf import settings; print(settings.DEBUG)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


# --- Search and filter input never reaches the ORM as lookups ---------------------------


HOSTILE_KEYS = [
    "execution_block__regex:.*",
    "metadata__context__access_group:" + TEAM,
    "access_group:" + TEAM,
    "context.access_group:" + TEAM,
    "uid__startswith:",
    "'; DROP TABLE dpd_dataproduct; --:x",
    "execution_block:' OR '1'='1",
    "pk__gt:0",
    "%:%",
    "_:_",
]


@pytest.mark.parametrize("pair", HOSTILE_KEYS)
def test_hostile_search_keys_are_matched_as_text_and_never_reveal_hidden_products(products, pair):
    response = APIClient().post(
        "/dataproductsearch",
        {"start_date": "1900-01-01", "end_date": "2100-01-01", "key_value_pairs": [pair]},
        format="json",
    )
    assert response.status_code in (200, 400), response.content
    hidden = {str(products[key].uid) for key in ("team", "other", "nobody")}
    if response.status_code == 200:
        assert not {row["uid"] for row in response.json()} & hidden
    assert DataProduct.objects.count() == 4


def test_a_lookup_suffix_in_a_search_key_is_a_literal_field_name(products):
    response = APIClient().post(
        "/dataproductsearch",
        {
            "start_date": "1900-01-01",
            "end_date": "2100-01-01",
            "key_value_pairs": ["execution_block__regex:.*"],
        },
        format="json",
    )
    assert response.status_code == 200
    assert response.json() == []


HOSTILE_ITEMS = [
    {"field": "access_group", "operator": "equals", "value": TEAM},
    {"field": "metadata__context__access_group", "operator": "equals", "value": TEAM},
    {"field": "context.access_group", "operator": "isAnyOf", "value": [TEAM, ""]},
    {"field": "context.access_group", "operator": "isNotEmpty", "value": ""},
    {"field": "execution_block", "operator": "regex", "value": ".*"},
    {"field": "execution_block__regex", "operator": "contains", "value": "eb"},
    {"field": "execution_block", "operator": "__in", "value": ["x"]},
    {"field": "id", "operator": ">", "value": "0 OR 1=1"},
    {"field": "execution_block", "operator": "contains", "value": "' OR '1'='1"},
    {"field": "execution_block", "operator": "contains", "value": "%"},
    {"field": "uid", "operator": "startsWith", "value": "_"},
    {"field": {"__class__": "x"}, "operator": ["contains"], "value": {"a": 1}},
]


@pytest.mark.parametrize("item", HOSTILE_ITEMS, ids=lambda item: str(item["field"])[:40])
def test_hostile_filter_items_never_reveal_hidden_products_or_crash(products, item):
    for body in (
        {"filterModel": {"items": [item]}, "page": 0, "pageSize": 25},
        {"searchPanelOptions": {"items": [item]}},
        {
            "sortModel": [{"field": item["field"], "sort": "asc"}],
            "filterModel": {"items": [item], "logicOperator": "or"},
        },
    ):
        response = APIClient().post("/filterdataproducts", body, format="json")
        assert response.status_code in (200, 400), response.content
        if response.status_code == 200:
            rows = response.json()
            rows = rows["data"] if isinstance(rows, dict) else rows
            assert {row["uid"] for row in rows} <= {str(products["open"].uid)}
    assert DataProduct.objects.count() == 4


def test_a_member_cannot_filter_their_way_to_another_groups_product(products):
    user = User.objects.create_user("member")
    user.groups.add(Group.objects.create(name=TEAM))
    client = APIClient()
    client.force_login(user)
    response = client.post(
        "/filterdataproducts",
        {
            "filterModel": {
                "items": [{"field": "context.access_group", "operator": "isNotEmpty", "value": ""}]
            },
            "page": 0,
            "pageSize": 25,
        },
        format="json",
    )
    assert response.status_code == 200
    assert {row["uid"] for row in response.json()["data"]} == {str(products["team"].uid)}
