"""POST /download with a search body: one archive of every visible match."""

import io
import tarfile

import pytest

from dpd.models import DataProduct
from tests.product_fixtures import UID

pytestmark = pytest.mark.usefixtures("upstream_catalogue")

EVERYTHING = {"start_date": "1900-01-01", "end_date": "2100-01-01"}
NOTEBOOK = "eb-notebook-20240201-54576"


def names_of(response) -> list[str]:
    assert response.status_code == 200, response.content[:300]
    data = b"".join(response.streaming_content)
    assert int(response["Content-Length"]) == len(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return archive.getnames()


def tops(names: list[str]) -> set[str]:
    return {name.split("/")[0] for name in names}


def folders_with_files(**conditions) -> set[str]:
    products = DataProduct.objects.filter(
        source=DataProduct.Source.VOLUME, dataproduct_file__isnull=False, **conditions
    )
    return {p.dataproduct_file.split("/")[0] for p in products}


def test_a_date_range_downloads_every_visible_product_under_its_folder(anonymous):
    response = anonymous.post("/download", EVERYTHING, format="json")
    assert response["Content-Disposition"] == 'attachment; filename="dataproducts.tar"'
    names = names_of(response)
    assert tops(names) == folders_with_files(access_group__isnull=True) | {"MANIFEST.sha256"}
    assert names[-1] == "MANIFEST.sha256"
    assert len(names) == len(set(names)), "a file of nested products went twice"


def test_access_groups_decide_what_a_search_download_holds(anonymous, member):
    hidden = DataProduct.objects.get(uid=UID[13]).dataproduct_file
    assert not any(
        n.startswith(hidden)
        for n in names_of(anonymous.post("/download", EVERYTHING, format="json"))
    )
    assert any(
        n.startswith(hidden) for n in names_of(member.post("/download", EVERYTHING, format="json"))
    )


def test_key_value_pairs_narrow_the_archive(anonymous):
    body = {**EVERYTHING, "key_value_pairs": ["execution_block:eb-notebook"]}
    names = names_of(anonymous.post("/download", body, format="json"))
    assert tops(names) == {NOTEBOOK}
    assert names[-1] == f"{NOTEBOOK}/ska-sdp/MANIFEST.sha256"


def test_a_filter_model_downloads_what_the_grid_shows(anonymous):
    body = {
        "filterModel": {
            "items": [{"field": "execution_block", "operator": "equals", "value": NOTEBOOK}],
            "logicOperator": "and",
        }
    }
    assert tops(names_of(anonymous.post("/download", body, format="json"))) == {NOTEBOOK}


def test_too_many_products_is_a_413_with_the_figures_before_any_byte(anonymous, settings):
    settings.DPD_QUERY_DOWNLOAD_MAX_PRODUCTS = 2
    response = anonymous.post("/download", EVERYTHING, format="json")
    assert response.status_code == 413
    assert not response.streaming
    total = DataProduct.objects.filter(
        access_group__isnull=True, source=DataProduct.Source.VOLUME, dataproduct_file__isnull=False
    ).count()
    detail = response.json()["detail"]
    assert f"{total} visible products with files match" in detail
    assert "at most 2 (DPD_QUERY_DOWNLOAD_MAX_PRODUCTS)" in detail


def test_too_many_bytes_is_a_413_with_the_figures_before_any_byte(anonymous, settings):
    settings.DPD_QUERY_DOWNLOAD_MAX_BYTES = 10_000
    response = anonymous.post("/download", EVERYTHING, format="json")
    assert response.status_code == 413
    assert not response.streaming
    detail = response.json()["detail"]
    assert "bytes in one archive; the limit is 10000 bytes" in detail
    # The limit is the search's: one product by uid is not held to it.
    assert anonymous.post("/download", {"uid": UID[15]}, format="json").status_code == 200


def test_a_search_matching_nothing_with_files_is_a_404(anonymous):
    body = {"start_date": "1900-01-01", "end_date": "1900-01-02"}
    response = anonymous.post("/download", body, format="json")
    assert response.status_code == 404
    assert response.json()["detail"].startswith("File not found: no visible product with files")


@pytest.mark.parametrize(
    "body",
    [
        {"key_value_pairs": ["no-colon"]},
        {"start_date": "yesterday"},
        {"key_value_pairs": "a:b"},
        {"filterModel": {"items": "x"}},
        {"start_date": 20240101},
        {"searchPanelOptions": "x"},
    ],
    ids=[
        "pair",
        "date",
        "pairs-not-a-list",
        "items-not-a-list",
        "date-number",
        "panel-not-an-object",
    ],
)
def test_a_bad_search_body_is_refused_as_the_search_endpoints_refuse_it(anonymous, body):
    endpoint = (
        "/filterdataproducts"
        if "start_date" not in str(body) and "key_value" not in str(body)
        else "/dataproductsearch"
    )
    expected = anonymous.post(endpoint, body, format="json")
    response = anonymous.post("/download", body, format="json")
    assert 400 <= response.status_code < 500 and not response.streaming
    assert (response.status_code, response.json()) == (expected.status_code, expected.json())


def test_the_dashboards_body_still_downloads_one_product(anonymous):
    body = {"uid": UID[15], "execution_block": "eb-test-20200325-00001", **EVERYTHING}
    response = anonymous.post("/download", body, format="json")
    assert tops(names_of(response)) == {"eb-test-20200325-00001"}


def test_a_body_with_neither_identifier_nor_search_is_still_the_reference_400(anonymous):
    response = anonymous.post("/download", {"relativePathName": "x"}, format="json")
    assert response.status_code == 400


def test_identifiers_in_the_query_string_of_an_empty_post(anonymous):
    response = anonymous.generic("POST", f"/download?uid={UID[15]}", "", content_type="")
    assert tops(names_of(response)) == {"eb-test-20200325-00001"}
    ranged = anonymous.generic(
        "POST", f"/download?uid={UID[15]}", "", content_type="", HTTP_RANGE="bytes=100-"
    )
    assert ranged.status_code == 206
