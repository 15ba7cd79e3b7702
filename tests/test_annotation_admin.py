"""Curators find annotations in the admin and read (never rewrite) their history."""

from __future__ import annotations

import pytest
from django.test import Client

from annotations.models import Annotation
from annotations.services import annotation_create, annotation_update
from dpd.models import DataProduct
from tests.annotation_helpers import make_product, make_user, named


@pytest.fixture
def curator_user(db):
    user = make_user("curator", staff=True)
    user.is_superuser = True
    user.save()
    return user


@pytest.fixture
def admin_client_(curator_user) -> Client:
    client = Client()
    client.force_login(curator_user)
    return client


@pytest.fixture
def annotations(db) -> tuple[Annotation, Annotation]:
    products = DataProduct.objects.all()
    first, second = make_product(), make_product("eb-m005-20231031-12345")
    kept = annotation_create(
        product_uid=first.uid,
        text="RFI in scan 3.",
        author=named("alice@skao.int"),
        products=products,
    )
    other = annotation_create(
        product_uid=second.uid, text="Looks fine.", author=named("bob@skao.int"), products=products
    )
    annotation_update(
        annotation_id=kept.annotation_id,
        text="RFI in scans 3 and 4.",
        editor=named("alice@skao.int"),
        editor_is_staff=False,
        products=None,
    )
    return kept, other


def test_the_admin_finds_annotations_by_product_uid(admin_client_, annotations):
    kept, _ = annotations

    html = admin_client_.get(
        "/admin/annotations/annotation/", {"q": str(kept.data_product_uid)}
    ).content.decode()

    assert "RFI in scans 3 and 4." in html
    assert "Looks fine." not in html


def test_the_admin_finds_annotations_by_user(admin_client_, annotations):
    html = admin_client_.get("/admin/annotations/annotation/", {"q": "bob@"}).content.decode()

    assert "Looks fine." in html
    assert "RFI in scans" not in html


def test_the_admin_filters_annotations_by_date(admin_client_, annotations):
    response = admin_client_.get(
        "/admin/annotations/annotation/", {"timestamp_modified__gte": "2000-01-01"}
    )

    assert response.status_code == 200
    assert "2 annotations" in response.content.decode()


def test_the_admin_shows_and_filters_how_an_author_signed_in(admin_client_, annotations):
    kept, _ = annotations
    page = admin_client_.get(f"/admin/annotations/annotation/{kept.annotation_id}/change/")
    assert "Dashboard token (SKA permissions API)" in page.content.decode()

    listed = admin_client_.get("/admin/annotations/annotation/", {"author_method": "account"})
    assert "0 annotations" in listed.content.decode()


def test_the_change_page_shows_the_history_read_only(admin_client_, annotations):
    kept, _ = annotations

    html = admin_client_.get(
        f"/admin/annotations/annotation/{kept.annotation_id}/change/"
    ).content.decode()

    assert "RFI in scan 3." in html  # the revision, read only
    assert 'name="revisions-0-annotation_text"' not in html
    assert 'name="annotation_text"' in html


def test_an_admin_edit_is_recorded_as_a_revision_by_the_curator(admin_client_, annotations):
    _, other = annotations

    response = admin_client_.post(
        f"/admin/annotations/annotation/{other.annotation_id}/change/",
        {
            "annotation_text": "Looks fine after recalibration.",
            "revisions-TOTAL_FORMS": "0",
            "revisions-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302
    other.refresh_from_db()
    assert other.annotation_text == "Looks fine after recalibration."
    assert other.user_principal_name == "bob@skao.int"
    (revision,) = other.revisions.all()
    assert (revision.annotation_text, revision.edited_by) == ("Looks fine.", "curator@skao.int")


def test_a_data_products_admin_page_links_to_its_product_page(admin_client_, annotations):
    kept, _ = annotations
    product = DataProduct.objects.get(uid=kept.data_product_uid)

    html = admin_client_.get(f"/admin/dpd/dataproduct/{product.pk}/change/").content.decode()

    assert f'href="/products/{product.uid}/"' in html


def test_the_admin_cannot_delete_annotations_or_their_history(admin_client_, annotations):
    kept, _ = annotations
    revision = kept.revisions.get()

    pages = [
        f"/admin/annotations/annotation/{kept.annotation_id}/delete/",
        f"/admin/annotations/annotationrevision/{revision.pk}/delete/",
    ]
    for page in pages:
        assert admin_client_.post(page, {"post": "yes"}).status_code == 403
    listed = admin_client_.get("/admin/annotations/annotationrevision/").content.decode()

    assert "delete_selected" not in listed
    assert Annotation.objects.filter(pk=kept.pk).exists() and kept.revisions.count() == 1


def test_an_admin_edit_keeps_the_text_as_written(admin_client_, annotations):
    # No trimming, as on the pages and through the API.
    _, other = annotations
    text = "   indented\nline two   \n"

    response = admin_client_.post(
        f"/admin/annotations/annotation/{other.annotation_id}/change/",
        {"annotation_text": text, "revisions-TOTAL_FORMS": "0", "revisions-INITIAL_FORMS": "0"},
    )

    assert response.status_code == 302
    other.refresh_from_db()
    assert other.annotation_text == text
