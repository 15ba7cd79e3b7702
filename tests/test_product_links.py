"""API clients find a product's page (annotations, history) through the
`Link` header of the product's API responses; the bodies stay as the SKA DPD
API defines them."""

import re

import pytest

from tests.product_fixtures import UID

pytestmark = pytest.mark.usefixtures("upstream_catalogue")

LINK = re.compile(r'^<(?P<url>[^>]+)>; rel="alternate"; type="text/html"$')


def page_url(response) -> str:
    match = LINK.match(response.headers["Link"])
    assert match, response.headers["Link"]
    return match["url"]


def test_the_metadata_response_links_to_the_product_page(curator):
    response = curator.post("/dataproductmetadata", {"uid": UID[7]}, format="json")

    url = page_url(response)
    assert url == f"http://testserver/products/{UID[7]}/"
    assert "Link" not in response.json()
    page = curator.get(url)
    assert page.status_code == 200
    assert "eb-m005-20231031-12345" in page.content.decode()


def test_an_annotation_list_links_to_the_page_that_shows_it(curator):
    note = {"data_product_uid": UID[7], "annotation_text": "RFI visible in scan 3."}
    assert curator.post("/annotation", note, format="json").status_code == 201

    response = curator.get(f"/annotations/{UID[7]}")

    assert response.status_code == 200
    assert "RFI visible in scan 3." in curator.get(page_url(response)).content.decode()


def test_a_refusal_carries_no_link(anonymous):
    response = anonymous.post("/dataproductmetadata", {"uid": UID[13]}, format="json")
    assert response.status_code == 404
    assert "Link" not in response.headers
