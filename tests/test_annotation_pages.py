"""The server-rendered product page, edit page and recent annotations."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from annotations.models import Annotation
from annotations.services import annotation_create, annotation_update
from dpd.models import DataProduct
from tests.annotation_helpers import TEAM, account_identity, make_product, make_user, unknown_uid


@pytest.fixture
def product(db):
    return make_product()


@pytest.fixture
def team_product(db):
    return make_product("eb-m002-20230922-246", access_group=TEAM)


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def member_user(db):
    return make_user("member", groups=(TEAM,))


@pytest.fixture
def member(member_user):
    return signed_in(member_user)


@pytest.fixture
def outsider(db):
    return signed_in(make_user("outsider"))


@pytest.fixture
def curator(db):
    return signed_in(make_user("curator", staff=True))


def the_member():
    """The identity of the Django user the `member` client signs in as."""
    user = User.objects.filter(username="member").first() or make_user("member", groups=(TEAM,))
    return account_identity(user)


def note(product, text: str) -> Annotation:
    """An annotation by the member."""
    return annotation_create(
        product_uid=product.uid, text=text, author=the_member(), products=DataProduct.objects.all()
    )


def without_csrf_token(response) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", response.content.decode())


def page(client: Client, product) -> str:
    response = client.get(product.get_absolute_url())
    assert response.status_code == 200
    return response.content.decode()


def test_an_anonymous_visitor_reads_a_public_product_page_with_a_sign_in_link(product):
    note(product, "Seen by the curator.")

    html = page(Client(), product)

    assert "eb-m001-20230921-245" in html and "pst-low/245/data" in html
    assert "Seen by the curator." in html
    assert 'id="add-annotation"' not in html
    assert f'href="/products/login/?next=/products/{product.uid}/"' in html


def test_a_product_of_an_access_group_is_a_404_page_to_an_anonymous_visitor(team_product):
    response = Client().get(team_product.get_absolute_url())

    assert response.status_code == 404
    assert "eb-m002-20230922-246" not in response.content.decode()


def test_an_anonymous_annotation_is_sent_to_the_login_form_and_saves_nothing(product):
    response = Client().post(
        f"/products/{product.uid}/annotations/", {"annotation_text": "drive-by"}
    )

    assert response.status_code == 302
    assert response["Location"].startswith("/products/login/?next=")
    assert not Annotation.objects.exists()


def test_the_edit_page_sends_an_anonymous_visitor_to_the_login_form(product):
    annotation = note(product, "Mine.")

    response = Client().get(f"/products/annotations/{annotation.annotation_id}/edit/")

    assert response.status_code == 302
    assert response["Location"].startswith("/products/login/?next=")


def test_a_member_who_is_not_staff_logs_in_through_the_pages_login_form(member_user, product):
    client = Client()
    login = client.get(f"/products/login/?next={product.get_absolute_url()}")
    assert 'name="csrfmiddlewaretoken"' in login.content.decode()

    response = client.post(
        "/products/login/",
        {
            "username": "member",
            "password": "correct horse battery",
            "next": product.get_absolute_url(),
        },
        follow=True,
    )

    assert response.redirect_chain[-1][0] == product.get_absolute_url()
    assert "eb-m001-20230921-245" in response.content.decode()


def test_opening_the_logout_address_asks_before_logging_out(member, product):
    """A link or a typed address (GET) shows a page with the logout button;
    only its POST, with the CSRF token, logs out (a GET that logged out
    could be triggered by any other site)."""
    asked = member.get("/products/logout/")

    assert asked.status_code == 200
    assert asked["Content-Type"].startswith("text/html")
    text = asked.content.decode()
    assert 'action="/products/logout/"' in text and 'name="csrfmiddlewaretoken"' in text
    assert page(member, product)  # still signed in

    logged_out = member.post("/products/logout/", follow=True)

    assert logged_out.redirect_chain[-1][0] == "/products/login/"
    assert 'id="add-annotation"' not in page(member, product)  # reading on, signed out


def test_the_logout_address_sends_a_visitor_who_is_not_signed_in_to_the_login_form(db):
    response = Client().get("/products/logout/")

    assert response.status_code == 302
    assert response["Location"] == "/products/login/"


def test_the_product_page_shows_key_metadata_and_the_files(member, team_product):
    html = page(member, team_product)

    for shown in (
        "eb-m002-20230922-246",
        "2023-09-21",
        "timeseries",
        "SKA-LOW-PST",
        TEAM,
        "pst-low/245/data",
        "Voltage data",
        "pst-low/245/observation.log",
    ):
        assert shown in html
    assert 'id="add-annotation"' in html
    assert "No annotations yet." in html


def test_a_product_with_odd_metadata_still_renders(member, product):
    product.metadata = {"execution_block": product.execution_block, "files": "not a list"}
    product.metadata["obscore"] = ["not", "a", "mapping"]
    product.save()

    html = page(member, product)

    assert "The metadata lists no files." in html


def test_annotations_are_shown_newest_first(member, product):
    note(product, "Older note.")
    note(product, "Newer note.")

    html = page(member, product)

    assert html.index("Newer note.") < html.index("Older note.")


def test_adding_an_annotation_saves_it_as_the_signed_in_user_and_shows_it(member, product):
    response = member.post(
        f"/products/{product.uid}/annotations/",
        {"annotation_text": "Calibration looks off.", "user_principal_name": "forged@skao.int"},
        follow=True,
    )

    annotation = Annotation.objects.get()
    assert annotation.user_principal_name == "member@skao.int"
    assert response.redirect_chain[-1][0] == annotation.get_absolute_url()
    html = response.content.decode()
    assert "Annotation saved." in html
    assert "Calibration looks off." in html


@pytest.mark.parametrize(
    ("text", "error"), [("", "This field is required."), ("   \r\n ", "must not be empty")]
)
def test_an_empty_annotation_shows_the_error_in_the_form_and_saves_nothing(
    member, product, text, error
):
    response = member.post(f"/products/{product.uid}/annotations/", {"annotation_text": text})

    assert response.status_code == 400
    html = response.content.decode()
    assert 'class="errorlist' in html
    assert error in html
    assert not Annotation.objects.exists()


def test_a_too_long_annotation_shows_the_limit_and_keeps_the_typed_text(member, product, settings):
    settings.ANNOTATION_MAX_LENGTH = 10

    response = member.post(
        f"/products/{product.uid}/annotations/", {"annotation_text": "eleven char"}
    )

    assert response.status_code == 400
    html = response.content.decode()
    assert "annotation_text is 11 characters long; the limit is 10." in html
    assert "eleven char</textarea>" in html
    assert not Annotation.objects.exists()


def test_annotation_text_is_shown_as_text_never_as_markup(member, product):
    note(product, '<script>alert("x")</script><b>bold</b>')

    html = page(member, product)

    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in html


def test_a_hidden_product_is_an_html_404_exactly_like_a_missing_one(outsider, team_product):
    hidden = outsider.get(team_product.get_absolute_url())
    missing = outsider.get(f"/products/{unknown_uid()}/")

    assert hidden.status_code == missing.status_code == 404
    assert hidden["Content-Type"].startswith("text/html")
    assert without_csrf_token(hidden) == without_csrf_token(missing)
    assert b"eb-m002" not in hidden.content


def test_adding_to_a_hidden_product_is_a_404_and_saves_nothing(outsider, team_product):
    response = outsider.post(
        f"/products/{team_product.uid}/annotations/", {"annotation_text": "Sneaky."}
    )

    assert response.status_code == 404
    assert not Annotation.objects.exists()


def test_the_edit_link_is_shown_to_the_author_and_staff_only(member, outsider, curator, product):
    annotation = note(product, "Editable by me.")
    link = f"/products/annotations/{annotation.annotation_id}/edit/"

    assert link in page(member, product)
    assert link in page(curator, product)
    assert link not in page(outsider, product)


def test_editing_another_users_annotation_is_a_403_page_and_changes_nothing(outsider, product):
    annotation = note(product, "Mine.")
    url = f"/products/annotations/{annotation.annotation_id}/edit/"

    shown = outsider.get(url)
    posted = outsider.post(url, {"annotation_text": "Yours now."})

    assert shown.status_code == posted.status_code == 403
    assert "only its author" in posted.content.decode()
    annotation.refresh_from_db()
    assert annotation.annotation_text == "Mine."


def test_editing_an_unknown_annotation_or_one_on_a_hidden_product_is_a_404_page(
    outsider, team_product
):
    hidden = note(team_product, "Team only.")

    assert outsider.get(f"/products/annotations/{hidden.annotation_id}/edit/").status_code == 404
    assert outsider.get("/products/annotations/999999/edit/").status_code == 404


def test_an_edit_keeps_both_versions_in_the_history_on_the_product_page(member, product):
    annotation = note(product, "Scan 3 has RFI.")
    url = f"/products/annotations/{annotation.annotation_id}/edit/"
    form = member.get(url).content.decode()
    assert "Scan 3 has RFI.</textarea>" in form

    response = member.post(url, {"annotation_text": "Scans 3 and 4 have RFI."}, follow=True)

    assert response.redirect_chain[-1][0] == annotation.get_absolute_url()
    html = response.content.decode()
    assert "Scans 3 and 4 have RFI." in html
    assert "Edit history (1 earlier version)" in html
    assert "Scan 3 has RFI." in html
    assert html.index("Scans 3 and 4 have RFI.") < html.index("Scan 3 has RFI.")


def test_an_invalid_edit_shows_the_error_and_keeps_the_old_text(member, product):
    annotation = note(product, "Keep me.")

    response = member.post(
        f"/products/annotations/{annotation.annotation_id}/edit/", {"annotation_text": " "}
    )

    assert response.status_code == 400
    assert "must not be empty" in response.content.decode()
    annotation.refresh_from_db()
    assert annotation.annotation_text == "Keep me."
    assert not annotation.revisions.exists()


def test_staff_edit_someone_elses_annotation_and_the_history_names_both(curator, product):
    annotation = note(product, "Typo in scna 3.")

    curator.post(
        f"/products/annotations/{annotation.annotation_id}/edit/",
        {"annotation_text": "Typo in scan 3."},
    )

    html = page(curator, product)
    assert "edited by curator@skao.int" in html
    assert "Written by member@skao.int" in html
    assert "replaced by curator@skao.int" in html


def test_a_form_posted_without_a_csrf_token_is_refused_and_saves_nothing(member_user, product):
    client = Client(enforce_csrf_checks=True)
    client.force_login(member_user)

    response = client.post(
        f"/products/{product.uid}/annotations/", {"annotation_text": "Cross-site."}
    )

    assert response.status_code == 403
    assert b"CSRF" in response.content
    assert not Annotation.objects.exists()


def test_recent_annotations_span_visible_products_newest_edit_first(
    outsider, member, product, team_product
):
    first = note(product, "First on the open product.")
    note(team_product, "On the team product.")
    annotation_update(
        annotation_id=first.annotation_id,
        text="Edited last, so listed first.",
        editor=the_member(),
        editor_is_staff=False,
        products=None,
    )

    members_view = member.get("/products/annotations/recent/").content.decode()
    outsiders_view = outsider.get("/products/annotations/recent/").content.decode()

    assert members_view.index("Edited last") < members_view.index("On the team product.")
    assert f'href="/products/{product.uid}/#annotation-{first.annotation_id}"' in members_view
    assert "Edited last, so listed first." in outsiders_view
    assert "On the team product." not in outsiders_view
    anonymous_view = Client().get("/products/annotations/recent/").content.decode()
    assert "Edited last, so listed first." in anonymous_view
    assert "On the team product." not in anonymous_view


def test_the_recent_page_says_so_when_there_are_none(member):
    assert "No annotations yet." in member.get("/products/annotations/recent/").content.decode()


def edited(annotation: Annotation, times: int) -> None:
    for n in range(times):
        annotation_update(
            annotation_id=annotation.annotation_id,
            text=f"version {n + 2}",
            editor=the_member(),
            editor_is_staff=False,
            products=None,
        )


def test_pages_cost_the_same_queries_for_one_annotation_or_many_with_history(member, product):
    busy = make_product("eb-m005-20231031-12345")
    edited(note(product, "alone"), 1)
    for n in range(6):
        edited(note(busy, f"note {n}"), 3)

    with CaptureQueriesContext(connection) as quiet_page:
        page(member, product)
    with CaptureQueriesContext(connection) as busy_page:
        page(member, busy)

    assert len(busy_page) == len(quiet_page)


def test_the_recent_page_costs_the_same_queries_for_few_or_many_products(member):
    note(make_product(), "one product")
    with CaptureQueriesContext(connection) as few:
        member.get("/products/annotations/recent/")
    for n in range(6):
        note(make_product(f"eb-m00{n}-20231031-1"), f"product {n}")
    with CaptureQueriesContext(connection) as many:
        member.get("/products/annotations/recent/")

    assert len(many) == len(few)


def test_a_product_page_takes_the_uid_forms_the_api_takes(member, product):
    # Upper case, or without hyphens: the same product, as in the API.
    for written in (str(product.uid).upper(), product.uid.hex):
        response = member.get(f"/products/{written}/")
        assert response.status_code == 200
        assert product.execution_block in response.content.decode()


@pytest.mark.parametrize("path", ["/products/not-a-uid/", "/products/annotations/abc/edit/"])
def test_a_mistyped_page_address_is_an_html_404_page(member, path):
    response = member.get(path)

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert "Not found" in response.content.decode()


def test_an_unknown_api_path_is_still_a_json_404(member):
    response = member.get("/no-such-endpoint")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


def test_opening_the_add_address_leads_back_to_the_product_page(member, product):
    # A form with errors is shown at /products/<uid>/annotations/; entering
    # that address again must not give a blank 405.
    response = member.get(f"/products/{product.uid}/annotations/")

    assert response.status_code == 302
    assert response["Location"] == f"/products/{product.uid}/"
