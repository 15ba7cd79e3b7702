"""Who may edit an annotation: its author, recognised by how they signed in
and the subject that sign-in gives, never by the principal name alone (an
operator may name a service account like a dashboard user)."""

from __future__ import annotations

import itertools

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotations.models import Annotation
from tests.access_support import FakePermissionsApi, service_account_token
from tests.annotation_helpers import make_product, make_user

NAME = "alice@skao.int"
METHODS = ["session", "token", "dashboard", "proxy"]


@pytest.fixture
def permissions_api(settings):
    fake = FakePermissionsApi().start()
    settings.SKA_PERMISSIONS_API_HOST = fake.url
    yield fake
    fake.stop()


@pytest.fixture
def alices(db, permissions_api, settings) -> dict[str, APIClient]:
    """Four callers named alice@skao.int, one per sign-in method: a Django user
    with that email (session), a service account with that username (token),
    a dashboard user and a proxy user with that principal name."""
    settings.TRUSTED_PROXY_ADDRESSES = ["127.0.0.1"]
    session = APIClient()
    session.force_login(make_user("alice"))
    token = APIClient()
    token.credentials(HTTP_AUTHORIZATION="Token " + service_account_token(NAME, ingest=False))
    dashboard = APIClient()
    dashboard.credentials(
        HTTP_AUTHORIZATION="Bearer " + permissions_api.add("alice-token", principal=NAME)
    )
    proxy = APIClient()
    proxy.credentials(HTTP_X_FORWARDED_USER=NAME)
    return {"session": session, "token": token, "dashboard": dashboard, "proxy": proxy}


def annotate(client: APIClient, uid) -> Annotation:
    body = {"data_product_uid": str(uid), "annotation_text": "RFI visible in scan 3."}
    response = client.post("/annotation", body, format="json")
    assert response.status_code == 201, response.content
    return Annotation.objects.get(annotation_id=response.json()["annotation_id"])


def edit(client: APIClient, annotation: Annotation, text: str):
    body = {"annotation_id": annotation.annotation_id, "annotation_text": text}
    return client.post("/annotation", body, format="json")


@pytest.mark.parametrize(("author", "other"), list(itertools.permutations(METHODS, 2)))
def test_the_same_name_signed_in_another_way_may_not_edit(alices, author, other):
    annotation = annotate(alices[author], make_product().uid)
    assert annotation.user_principal_name == NAME  # shown as before

    refused = edit(alices[other], annotation, "Not mine to change.")

    assert refused.status_code == 403
    assert "only its author" in refused.json()["detail"]
    annotation.refresh_from_db()
    assert annotation.annotation_text == "RFI visible in scan 3."
    assert not annotation.revisions.exists()
    assert edit(alices[author], annotation, "RFI in scans 3 and 4.").status_code == 200


def test_one_account_is_one_author_by_session_or_by_its_token(alices):
    annotation = annotate(alices["session"], make_product().uid)
    user = User.objects.get(username="alice")
    by_token = APIClient()
    by_token.credentials(HTTP_AUTHORIZATION="Token " + Token.objects.create(user=user).key)

    assert edit(by_token, annotation, "Edited from a script.").status_code == 200


def test_another_account_with_the_same_email_may_not_edit(alices):
    annotation = annotate(alices["session"], make_product().uid)
    twin = APIClient()
    twin.force_login(User.objects.create_user("alice2", email=NAME))

    assert edit(twin, annotation, "Same email, another account.").status_code == 403


def test_the_product_page_offers_no_edit_to_the_same_name_signed_in_another_way(alices):
    product = make_product()
    annotation = annotate(alices["dashboard"], product.uid)
    page = APIClient()
    page.force_login(User.objects.get(username="alice"))  # email alice@skao.int

    shown = page.get(f"/products/{product.uid}/").content.decode()
    assert "RFI visible in scan 3." in shown
    assert f"/products/annotations/{annotation.annotation_id}/edit/" not in shown
    edit_page = page.get(f"/products/annotations/{annotation.annotation_id}/edit/")
    assert edit_page.status_code == 403


def test_a_legacy_annotation_stays_editable_by_its_name_only(alices):
    product = make_product()
    legacy = Annotation.objects.create(
        data_product_uid=product.uid,
        annotation_text="Written before the upgrade.",
        user_principal_name=NAME,
        author_method="legacy",
        author_subject=NAME,
    )
    bob = APIClient()
    bob.force_login(make_user("bob"))

    assert edit(bob, legacy, "Not bob's.").status_code == 403
    assert edit(alices["dashboard"], legacy, "Still alice's, by name.").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_the_upgrade_keeps_existing_annotations_as_legacy_rows():
    executor = MigrationExecutor(connection)
    before = [("annotations", "0001_initial")]
    executor.migrate(before)
    old = executor.loader.project_state(before).apps.get_model("annotations", "Annotation")
    product = make_product()
    row = old.objects.create(
        data_product_uid=product.uid, annotation_text="Old note.", user_principal_name=NAME
    )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    upgraded = Annotation.objects.get(annotation_id=row.annotation_id)
    assert (upgraded.author_method, upgraded.author_subject) == ("legacy", NAME)
    assert upgraded.user_principal_name == NAME
