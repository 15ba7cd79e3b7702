"""Schemathesis against the schema the code generates: for every operation, a
bounded number of generated requests through the WSGI app (PostgreSQL behind
it, the fixture catalogue loaded); no 5xx, and every response matches the
documented status codes, content types and schemas. It runs signed in as a
curator, and again with fewer examples for each other kind of caller: no
credentials, a service account's API token, a dashboard bearer token resolved
through a local stand-in for the SKA permissions API."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token

from dpd.wsgi import application
from tests.access_support import OTHER, TEAM, FakePermissionsApi, service_account_token

MAX_EXAMPLES = 25
# Per operation and caller, for the callers other than the curator.
MAX_EXAMPLES_PER_CALLER = 8

schema = schemathesis.from_dict(
    SchemaGenerator().get_schema(request=None, public=True), app=application
)


@pytest.fixture
def wsgi_in_test_transaction(db):
    """Calls into the WSGI app share the test's transaction, as Django's own
    test client arranges: the per-request connection recycling would close it."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def curator_token(db, django_user_model) -> str:
    user = django_user_model.objects.create_user("schemathesis-curator", is_staff=True)
    return Token.objects.create(user=user).key


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
def test_the_api_honours_its_schema(
    case, upstream_catalogue, wsgi_in_test_transaction, curator_token
):
    # A savepoint per example: a failing request must not poison the next one.
    with transaction.atomic():
        case.call_and_validate(
            # Signed in as a curator, so ingest and re-index get past 401/403.
            headers={"Authorization": f"Token {curator_token}"},
            # Every endpoint lists the optional authentication schemes; most allow anonymous.
            excluded_checks=[schemathesis.checks.ignored_auth],
        )
        transaction.set_rollback(True)


@pytest.fixture(params=["anonymous", "service account", "dashboard member"])
def caller_headers(request, db, settings) -> dict[str, str]:
    """The headers of one kind of caller; the permissions API runs for all of them."""
    api = FakePermissionsApi().start()
    request.addfinalizer(api.stop)
    settings.SKA_PERMISSIONS_API_HOST = api.url
    settings.SKA_PERMISSIONS_API_TIMEOUT_SECONDS = 1.0
    if request.param == "service account":
        return {"Authorization": f"Token {service_account_token('schemathesis-pipeline', OTHER)}"}
    if request.param == "dashboard member":
        token = api.add("member-token", groups=[TEAM], principal="member@skao.int")
        return {"Authorization": f"Bearer {token}"}
    return {}


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES_PER_CALLER,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
def test_the_api_honours_its_schema_for_every_kind_of_caller(
    case, upstream_catalogue, wsgi_in_test_transaction, caller_headers
):
    with transaction.atomic():
        case.call_and_validate(
            headers=caller_headers, excluded_checks=[schemathesis.checks.ignored_auth]
        )
        transaction.set_rollback(True)
