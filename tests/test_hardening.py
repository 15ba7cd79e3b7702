"""Hostile input and production hardening: oversized bodies, password
guessing, floods, crashes, production settings, search/filter input that
tries to reach the ORM as lookups or SQL, downloads that try to leave the
volume, NUL characters and YAML bombs, and cross-site form posts.

The other hostile inputs of issue 7 live with their feature: ingest paths and
symlinks in test_api_ingest.py, header spoofing, dead tokens and a failing
permissions API in test_authentication.py, list-valued and "" access groups in
test_access.py."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys

import pytest
import time_machine
from django.conf import settings as django_settings
from django.contrib.auth.models import Group, User
from django.test import Client
from rest_framework.test import APIClient

from annotations.models import Annotation
from dpd.models import DataProduct
from indexing.indexer import index_volume
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
    assert refused["Content-Type"].startswith("text/html")
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


def _behind_one_ingress(settings) -> None:
    settings.DPD_THROTTLE_ANON_RATE = "2/minute"
    settings.DPD_NUM_PROXIES = 1
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    settings.DPD_PROXY_ADDRESSES = ["10.0.0.0/8"]  # the ingress controller's pods


def _searches(remote: str, forwarded_for: list[str]) -> list[int]:
    return [
        APIClient(REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=address)
        .post("/dataproductsearch", {}, format="json")
        .status_code
        for address in forwarded_for
    ]


def test_behind_an_ingress_each_dashboard_user_has_a_bucket_of_their_own(settings, products):
    _behind_one_ingress(settings)
    users = ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
    assert _searches("10.0.0.5", users * 2) == [200] * 6
    assert _searches("10.0.0.5", ["203.0.113.1"]) == [429]


def test_x_forwarded_for_is_not_believed_from_outside_the_proxy_addresses(settings, products):
    _behind_one_ingress(settings)
    forged = [f"203.0.113.{n}" for n in range(3)]
    assert _searches("198.51.100.7", forged) == [200, 200, 429]


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


@pytest.mark.slow
@pytest.mark.skipif(not django_settings.IS_POSTGRESQL, reason="a PostgreSQL setting")
def test_server_side_binding_refuses_to_start():
    url = os.environ["DATABASE_URL"]
    url += ("&" if "?" in url else "?") + "server_side_binding=true"
    result = manage("check", DATABASE_URL=url)
    assert result.returncode != 0
    assert "server_side_binding" in result.stderr and "ImproperlyConfigured" in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(not django_settings.IS_POSTGRESQL, reason="a PostgreSQL setting")
def test_a_random_page_cost_that_is_not_a_number_refuses_to_start():
    result = manage("check", DATABASE_RANDOM_PAGE_COST="cheap")
    assert result.returncode != 0
    assert "DATABASE_RANDOM_PAGE_COST='cheap' is not a number" in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(not django_settings.IS_POSTGRESQL, reason="a PostgreSQL setting")
def test_a_work_mem_that_is_not_a_memory_size_refuses_to_start():
    # It would go into libpq's options, where a space starts another option.
    result = manage("check", DATABASE_WORK_MEM="32MB -c statement_timeout=1")
    assert result.returncode != 0
    assert "DATABASE_WORK_MEM='32MB -c statement_timeout=1' is not a PostgreSQL memory size" in (
        result.stderr
    )


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


# --- Downloads that try to leave the volume ----------------------------------------------

# A download names a product (uid or execution block), never a path: anything
# path-like is looked up as a name, found nowhere, and refused before any byte.
PATH_LIKE = [
    "../etc",
    "eb-test-20200325-00001/../../..",
    "/etc",
    "//etc",
    "%2e%2e/etc",
    "%2E%2E%2Fetc",
    "%252e%252e%252fetc",
    "..%2fetc",
    "eb-test-20200325-00001%00",
]


@pytest.mark.parametrize("execution_block", PATH_LIKE)
def test_a_download_naming_a_path_is_a_404_before_any_byte(products, execution_block):
    response = staff_client().post("/download", {"execution_block": execution_block}, format="json")
    assert response.status_code == 404
    assert not response.streaming
    assert response.json() == {
        "detail": f"File not found: no data product with execution_block {execution_block}"
    }


@pytest.mark.parametrize(
    "body",
    [
        {"execution_block": "eb-test-20200325-00001\x00"},
        {"execution_block": "\x00../../etc"},
        {"uid": "\x00"},
        {"uid": "../../etc/passwd"},
    ],
    ids=["nul-after-eb", "nul-before-path", "nul-uid", "path-uid"],
)
def test_a_download_with_a_nul_byte_or_a_path_for_a_uid_is_refused_in_json(products, body):
    response = staff_client().post("/download", body, format="json")
    assert response.status_code == 422
    assert not response.streaming
    assert response.json()["detail"]


def test_a_product_folder_swapped_for_a_symlink_out_of_the_volume_is_never_sent(
    products, sample_volume, tmp_path
):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("the host's secret\n")
    folder = sample_volume / products["open"].dataproduct_file
    shutil.rmtree(folder)
    folder.symlink_to(outside, target_is_directory=True)
    response = staff_client().post("/download", {"uid": str(products["open"].uid)}, format="json")
    assert response.status_code == 404
    assert not response.streaming
    assert "not inside the volume" in response.json()["detail"]


# --- NUL characters and YAML bombs: PostgreSQL cannot store NUL, so each is a clear 400 -----


@pytest.mark.parametrize(
    "item",
    [
        {"field": "execution_block", "operator": "contains", "value": "eb\x00"},
        {"field": "execution_block", "operator": "isAnyOf", "value": ["eb", "x\x00"]},
        {"field": "exec\x00", "operator": "contains", "value": "eb"},
    ],
    ids=["value", "list-value", "field"],
)
def test_a_nul_character_in_a_filter_is_a_clear_400(products, item):
    response = APIClient().post(
        "/filterdataproducts", {"filterModel": {"items": [item]}}, format="json"
    )
    assert response.status_code == 400
    assert "Null characters are not allowed" in response.json()["detail"]


@pytest.mark.parametrize(
    "context",
    [{"notes": "a\x00b"}, {"no\x00tes": "x"}, {"notes": ["fine", {"deep": "a\x00"}]}],
    ids=["value", "key", "nested"],
)
def test_ingested_metadata_with_a_nul_character_answers_400_and_stores_nothing(products, context):
    response = staff_client().post(
        "/ingestnewmetadata",
        {"execution_block": "eb-nul-20240101-00001", "context": context},
        format="json",
    )
    assert response.status_code == 400
    assert "NUL character" in response.json()["detail"]
    assert DataProduct.objects.count() == 4


ALIAS_BOMB = "bomb0: &b0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"bomb{n}: &b{n} [{', '.join([f'*b{n - 1}'] * 10)}]\n" for n in range(1, 9)
)
HOSTILE_FILES = {
    "alias-bomb": (ALIAS_BOMB, "YAML alias bomb"),
    "nul-escape": ('context: {notes: "a\\0b"}\n', "NUL character"),
    "nul-binary": ("context: {notes: !!binary AAEC}\n", "NUL character"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_FILES))
def test_a_hostile_metadata_file_is_refused_by_ingest_and_stores_nothing(
    products, sample_volume, case
):
    document, reason = HOSTILE_FILES[case]
    folder = sample_volume / "eb-hostile-20240101-00001"
    folder.mkdir()
    (folder / "ska-data-product.yaml").write_text(
        "execution_block: eb-hostile-20240101-00001\n" + document
    )
    response = staff_client().post(
        "/ingestnewdataproduct", {"execution_block": "eb-hostile-20240101-00001"}, format="json"
    )
    assert response.status_code == 400
    assert reason in response.json()["detail"]
    assert DataProduct.objects.count() == 4


def test_a_volume_file_with_a_nul_character_is_an_error_and_the_rest_is_indexed(tmp_path):
    for name, extra in (("eb-good-20240101-00001", ""), ("eb-nul-20240101-00001", "a\\0b")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "ska-data-product.yaml").write_text(
            f'execution_block: {name}\ncontext: {{notes: "{extra}"}}\nfiles: []\n'
        )
    result = index_volume(str(tmp_path), workers=1)
    assert list(DataProduct.objects.values_list("execution_block", flat=True)) == [
        "eb-good-20240101-00001"
    ]
    assert "NUL character" in str(result.errors)


# --- CSRF: cookie sessions must prove the form is ours; tokens need no proof ----------------


def test_the_annotation_api_refuses_a_session_post_without_a_csrf_token(products):
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_user("curator", is_staff=True))
    response = client.post(
        "/annotation",
        {"data_product_uid": str(products["open"].uid), "annotation_text": "cross-site"},
        content_type="application/json",
    )
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert not Annotation.objects.exists()


def test_the_annotation_edit_form_refuses_a_post_without_a_csrf_token(products):
    author = User.objects.create_user("author", email="author@skao.int")
    note = Annotation.objects.create(
        data_product_uid=products["open"].uid,
        annotation_text="original",
        user_principal_name="author@skao.int",
        author_method="account",
        author_subject=str(author.pk),
    )
    client = Client(enforce_csrf_checks=True)
    client.force_login(author)
    page = client.get(f"/products/annotations/{note.annotation_id}/edit/")
    assert page.status_code == 200  # the author may edit, with the form's token
    response = client.post(
        f"/products/annotations/{note.annotation_id}/edit/", {"annotation_text": "forged"}
    )
    assert response.status_code == 403
    note.refresh_from_db()
    assert note.annotation_text == "original"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/filterdataproducts", {"page": 0, "pageSize": 5}),
        ("/dataproductsearch", {}),
        ("/dataproductmetadata", {"execution_block": "eb-none"}),
        ("/download", {"execution_block": "eb-none"}),
    ],
)
def test_reading_posts_need_no_csrf_token_from_a_signed_in_browser(products, path, body):
    # The dashboard, on the same site, posts its searches with the browser's
    # cookies and no CSRF token; a user signed in to the pages must not get 403.
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_user("alice"))

    response = client.post(path, body, content_type="application/json")

    assert response.status_code in (200, 404)
    assert "CSRF" not in response.content.decode()


def test_a_signed_in_curators_ingest_without_a_csrf_token_is_refused(products):
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_user("curator2", is_staff=True))

    response = client.post(
        "/ingestnewmetadata", {"execution_block": "eb-csrf-1"}, content_type="application/json"
    )

    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert not DataProduct.objects.filter(execution_block="eb-csrf-1").exists()
