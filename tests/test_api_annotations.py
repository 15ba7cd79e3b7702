"""POST /annotation and GET /annotations/<uid> (reference 2.12, 2.13, 1.3)."""

from __future__ import annotations

import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotations.models import Annotation
from tests.annotation_helpers import (
    TEAM,
    database_unreachable,
    make_product,
    make_user,
    unknown_uid,
)

CREATED = {"status": "success", "message": "New Data Annotation received and successfully saved."}
UPDATED = {"status": "success", "message": "Data Annotation received and updated successfully."}
NOT_PROCESSED = {
    "status": "Received but not processed",
    "message": "PostgresSQL is not available, cannot access data annotations.",
}
NAIVE_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$")


@pytest.fixture
def product(db):
    return make_product()


@pytest.fixture
def team_product(db):
    return make_product("eb-m002-20230922-246", access_group=TEAM)


def client_for(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def member(db):
    return client_for(make_user("member", groups=(TEAM,)))


@pytest.fixture
def outsider(db):
    return client_for(make_user("outsider"))


@pytest.fixture
def curator(db):
    return client_for(make_user("curator", staff=True))


def annotate(client: APIClient, uid, text="RFI visible in scan 3.", **extra):
    return client.post(
        "/annotation",
        {"data_product_uid": str(uid), "annotation_text": text, **extra},
        format="json",
    )


def edit(client: APIClient, annotation_id, text, **extra):
    body = {"annotation_id": annotation_id, "annotation_text": text, **extra}
    return client.post("/annotation", body, format="json")


def test_it_creates_an_annotation_with_the_upstream_201_message(member, product):
    response = annotate(member, product.uid)

    assert response.status_code == 201
    body = response.json()
    assert {key: body[key] for key in ("status", "message")} == CREATED
    saved = Annotation.objects.get(pk=body["annotation_id"])
    assert saved.data_product_uid == product.uid
    assert saved.annotation_text == "RFI visible in scan 3."


def test_the_author_comes_from_the_identity_never_from_the_body(member, product):
    response = annotate(member, product.uid, user_principal_name="someone.else@skao.int")

    assert response.status_code == 201
    assert Annotation.objects.get().user_principal_name == "member@skao.int"


def test_a_dashboard_style_body_without_content_type_is_read_as_json(member, product):
    body = json.dumps({"data_product_uid": str(product.uid), "annotation_text": "No header."})

    response = member.generic("POST", "/annotation", body, content_type="")

    assert response.status_code == 201
    assert Annotation.objects.get().annotation_text == "No header."


def test_a_script_with_an_api_token_can_annotate(product, db):
    token = Token.objects.create(user=make_user("pipeline"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    assert annotate(client, product.uid).status_code == 201
    assert Annotation.objects.get().user_principal_name == "pipeline@skao.int"


def test_the_author_updates_the_text_and_keeps_the_old_one_in_the_history(member, product):
    annotation_id = annotate(member, product.uid, "First thought.").json()["annotation_id"]
    before = Annotation.objects.get()

    response = edit(member, annotation_id, "Second thought.", data_product_uid=str(product.uid))

    assert response.status_code == 200
    assert {key: response.json()[key] for key in ("status", "message")} == UPDATED
    after = Annotation.objects.get()
    assert after.annotation_text == "Second thought."
    assert after.timestamp_created == before.timestamp_created
    assert after.timestamp_modified > before.timestamp_modified
    (revision,) = after.revisions.all()
    assert revision.annotation_text == "First thought."
    assert revision.written_by == revision.edited_by == "member@skao.int"


def test_listing_gives_the_upstream_shape_sorted_by_id_with_naive_utc_times(member, product):
    ids = [annotate(member, product.uid, f"note {n}").json()["annotation_id"] for n in range(3)]
    annotate(member, make_product("eb-other-20240101-1").uid, "elsewhere")

    response = member.get(f"/annotations/{product.uid}")

    assert response.status_code == 200
    rows = response.json()
    assert [row["annotation_id"] for row in rows] == sorted(ids)
    assert set(rows[0]) == {
        "annotation_id",
        "data_product_uid",
        "annotation_text",
        "user_principal_name",
        "timestamp_created",
        "timestamp_modified",
    }
    assert rows[0]["data_product_uid"] == str(product.uid)
    assert rows[0]["user_principal_name"] == "member@skao.int"
    assert NAIVE_ISO.match(rows[0]["timestamp_created"])
    assert NAIVE_ISO.match(rows[0]["timestamp_modified"])


def test_a_product_without_annotations_answers_204_with_no_body(member, product):
    response = member.get(f"/annotations/{product.uid}")

    assert response.status_code == 204
    assert response.content == b""


def test_an_unknown_uid_answers_204_like_a_product_without_annotations(member):
    assert member.get(f"/annotations/{unknown_uid()}").status_code == 204


def test_a_hidden_products_annotations_are_listed_for_members_only(member, outsider, team_product):
    annotate(member, team_product.uid, "Team-only note.")

    assert member.get(f"/annotations/{team_product.uid}").status_code == 200
    assert outsider.get(f"/annotations/{team_product.uid}").status_code == 204
    assert client_for().get(f"/annotations/{team_product.uid}").status_code == 204


def test_anyone_may_list_the_annotations_of_a_public_product(member, product):
    annotate(member, product.uid, "Open note.")

    response = client_for().get(f"/annotations/{product.uid}/")

    assert response.status_code == 200
    assert [row["annotation_text"] for row in response.json()] == ["Open note."]


def test_a_malformed_uid_in_the_listing_path_answers_400(member):
    response = member.get("/annotations/not-a-uid'--")

    assert response.status_code == 400
    assert "is not a UUID" in response.json()["detail"]


def test_posting_without_an_identity_answers_401_and_saves_nothing(product):
    response = annotate(client_for(), product.uid)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert "detail" in response.json()
    assert not Annotation.objects.exists()


def test_annotating_an_unknown_product_answers_404(member):
    response = annotate(member, unknown_uid())

    assert response.status_code == 404
    assert "No data product" in response.json()["detail"]


def test_annotating_a_product_hidden_from_the_caller_answers_404_like_a_missing_one(
    outsider, team_product
):
    hidden = annotate(outsider, team_product.uid)
    missing = annotate(outsider, unknown_uid())

    assert hidden.status_code == missing.status_code == 404
    assert not Annotation.objects.exists()


@pytest.mark.parametrize("annotation_id", [987654, 2**70, -1, 0])
def test_updating_an_unknown_annotation_answers_404(member, product, annotation_id):
    response = edit(member, annotation_id, "Anything.")

    assert response.status_code == 404
    assert "No annotation" in response.json()["detail"]


def test_updating_an_annotation_on_a_hidden_product_answers_404(member, outsider, team_product):
    annotation_id = annotate(member, team_product.uid).json()["annotation_id"]

    assert edit(outsider, annotation_id, "Overwritten.").status_code == 404
    assert Annotation.objects.get().annotation_text == "RFI visible in scan 3."


def test_editing_another_users_annotation_answers_403_and_changes_nothing(
    member, outsider, product
):
    annotation_id = annotate(member, product.uid, "Mine.").json()["annotation_id"]

    response = edit(outsider, annotation_id, "Yours now.")

    assert response.status_code == 403
    assert "only its author" in response.json()["detail"]
    annotation = Annotation.objects.get()
    assert annotation.annotation_text == "Mine."
    assert not annotation.revisions.exists()


def test_staff_may_edit_another_users_annotation_and_the_history_says_who(member, curator, product):
    annotation_id = annotate(member, product.uid, "Typo in scna.").json()["annotation_id"]

    response = edit(curator, annotation_id, "Typo in scan.")

    assert response.status_code == 200
    annotation = Annotation.objects.get()
    assert annotation.user_principal_name == "member@skao.int"
    assert annotation.modified_by == "curator@skao.int"
    (revision,) = annotation.revisions.all()
    assert (revision.written_by, revision.edited_by) == ("member@skao.int", "curator@skao.int")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must not be empty"),
        ("  \n\t ", "must not be empty"),
        (None, "is required"),
        (42, "must be a string, not a number"),
        (["a", "list"], "must be a string, not an array"),
        ("nul\x00byte", "NUL"),
    ],
)
def test_bad_text_answers_400_with_a_clear_message_and_saves_nothing(
    member, product, text, message
):
    response = annotate(member, product.uid, text)

    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert not Annotation.objects.exists()


def test_bad_text_on_update_answers_400_and_keeps_the_old_text(member, product):
    annotation_id = annotate(member, product.uid, "Keep me.").json()["annotation_id"]

    assert edit(member, annotation_id, "   ").status_code == 400
    assert Annotation.objects.get().annotation_text == "Keep me."


def test_text_past_the_documented_limit_answers_413(member, product, settings):
    settings.ANNOTATION_MAX_LENGTH = 20

    at_limit = annotate(member, product.uid, "x" * 20)
    past_limit = annotate(member, product.uid, "x" * 21)

    assert at_limit.status_code == 201
    assert past_limit.status_code == 413
    assert past_limit.json()["detail"] == (
        "annotation_text is 21 characters long; the limit is 20."
    )
    assert Annotation.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([{"annotation_text": "in a list"}], "must be a JSON object"),
        ({"annotation_text": "no uid"}, "data_product_uid is required"),
        ({"data_product_uid": "../../etc/passwd", "annotation_text": "x"}, "is not a UUID"),
        ({"data_product_uid": 7, "annotation_text": "x"}, "must be a string"),
        ({"annotation_id": "12", "annotation_text": "x"}, "annotation_id must be an integer"),
        ({"annotation_id": True, "annotation_text": "x"}, "annotation_id must be an integer"),
    ],
)
def test_a_malformed_body_answers_400_naming_the_problem(member, product, body, message):
    response = member.post("/annotation", body, format="json")

    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert not Annotation.objects.exists()


def test_invalid_json_answers_400_with_detail(member):
    response = member.generic("POST", "/annotation", "{not json", content_type="application/json")

    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]


def test_a_null_annotation_id_creates_like_the_upstream(member, product):
    response = annotate(member, product.uid, annotation_id=None)

    assert response.status_code == 201


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_database_gets_the_reference_body_503_on_post_and_202_on_get():
    user = make_user("member")
    product_uid = str(make_product().uid)
    signed_in = client_for(user)
    anonymous = client_for()

    with database_unreachable():
        post = annotate(signed_in, product_uid)
        get_signed_in = signed_in.get(f"/annotations/{product_uid}")
        get_anonymous = anonymous.get(f"/annotations/{product_uid}")

    assert (post.status_code, post.json()) == (503, NOT_PROCESSED)
    assert (get_signed_in.status_code, get_signed_in.json()) == (202, NOT_PROCESSED)
    assert (get_anonymous.status_code, get_anonymous.json()) == (202, NOT_PROCESSED)
    assert not Annotation.objects.exists()


def test_listing_costs_the_same_queries_for_one_annotation_or_many(member, product):
    other = make_product("eb-m005-20231031-12345")
    annotate(member, product.uid, "only one")
    for n in range(8):
        annotate(member, other.uid, f"one of many {n}")

    with CaptureQueriesContext(connection) as one:
        assert len(member.get(f"/annotations/{product.uid}").json()) == 1
    with CaptureQueriesContext(connection) as many:
        assert len(member.get(f"/annotations/{other.uid}").json()) == 8

    assert len(many) == len(one)


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [("application/x-www-form-urlencoded", "annotation_text=x"), ("text/plain", "hello")],
)
def test_a_body_that_is_not_json_answers_400_not_415(member, product, content_type, raw):
    response = member.generic("POST", "/annotation", raw, content_type=content_type)

    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
    assert not Annotation.objects.exists()
