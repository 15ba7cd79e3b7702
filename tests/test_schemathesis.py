"""Schemathesis against the schema the code generates: for every operation, a
bounded number of generated requests through the WSGI app (PostgreSQL behind
it, the fixture catalogue loaded, signed in as a curator); no 5xx, and every
response matches the documented status codes, content types and schemas."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token

from dpd.wsgi import application

MAX_EXAMPLES = 25

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
