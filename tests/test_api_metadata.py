"""POST /dataproductmetadata (reference 2.8, 7), through HTTP against PostgreSQL."""

import json

import pytest

from dpd.api.product_serializers import MISSING_IDENTIFIER
from dpd.metadata import from_volume_file
from dpd.models import DataProduct
from tests.product_fixtures import UID

pytestmark = pytest.mark.usefixtures("upstream_catalogue")


def post(client, body, **extra):
    return client.post("/dataproductmetadata", body, format="json", **extra)


def test_the_metadata_of_product_7_includes_its_intent(anonymous):
    response = post(anonymous, {"uid": UID[7]})
    assert response.status_code == 200
    document = response.json()
    assert document["context"]["intent"] == "Experimental run as part of XYZ-123"
    assert document["uid"] == UID[7]
    assert document["execution_block"] == "eb-m005-20231031-12345"
    assert document["date_created"] == "2023-10-31"
    assert document["dataproduct_file"] == "eb-m005-20231031-12345"
    assert document["metadata_file"] == "eb-m005-20231031-12345/ska-data-product.yaml"
    assert document["metadata_store_name"] == "shared"
    # Nested, not flattened, and no grid row id.
    assert "context.intent" not in document
    assert "id" not in document


def test_the_document_keeps_its_nulls_and_yaml_types(anonymous):
    document = post(anonymous, {"uid": UID[3]}).json()
    assert "pol_states" in document["obscore"]
    assert document["obscore"]["pol_states"] is None
    assert document["obscore"]["target_name"] == "None"


def test_a_body_without_content_type_is_read_as_json(anonymous):
    # What requests.post(url, data=json.dumps(body)) sends: no Content-Type at all.
    response = anonymous.generic(
        "POST", "/dataproductmetadata", json.dumps({"uid": UID[7]}), content_type=""
    )
    assert response.status_code == 200
    assert response.json()["uid"] == UID[7]


def test_the_fields_the_dashboard_adds_are_ignored(anonymous):
    body = {
        "uid": UID[12],
        "execution_block": "eb-notebook-20240201-54576",
        "relativePathName": "eb-notebook-20240201-54576/ska-sdp/pb-notebookvr-20240201-54576",
        "metaDataFile": "whatever.yaml",
        "metadata_store_name": "shared",
        "data_store": "dpd",
    }
    response = post(anonymous, body)
    assert response.status_code == 200
    assert response.json()["uid"] == UID[12]


@pytest.mark.parametrize(
    "uid",
    [UID[7].upper(), UID[7].replace("-", ""), f"  {UID[7]} "],
    ids=["upper-case", "without-hyphens", "padded"],
)
def test_a_uid_in_another_spelling_finds_the_same_product(anonymous, uid):
    assert post(anonymous, {"uid": uid}).json()["uid"] == UID[7]


@pytest.mark.parametrize(
    "body",
    [{}, {"uid": None}, {"uid": "", "execution_block": ""}, {"execution_block": None}],
    ids=["empty", "null-uid", "empty-strings", "null-eb"],
)
def test_neither_uid_nor_execution_block_answers_the_reference_400(anonymous, body):
    response = post(anonymous, body)
    assert response.status_code == 400
    assert response.json() == {"detail": MISSING_IDENTIFIER}


def test_an_unknown_uid_answers_404_with_a_detail(anonymous):
    unknown = "00000000-1111-2222-3333-444444444444"
    response = post(anonymous, {"uid": unknown})
    assert response.status_code == 404
    assert response.json() == {
        "detail": f"Data product not found: no data product with uid {unknown}."
    }


def test_a_hidden_product_answers_exactly_like_a_missing_one(anonymous, member):
    hidden = post(anonymous, {"uid": UID[13]})
    assert hidden.status_code == 404
    assert hidden.json() == {
        "detail": f"Data product not found: no data product with uid {UID[13]}."
    }
    assert post(member, {"uid": UID[13]}).status_code == 200
    # Nobody's group is "not-in-my-access-groups".
    assert post(member, {"uid": UID[18]}).status_code == 404


def test_an_execution_block_alone_finds_no_product(anonymous):
    response = post(anonymous, {"execution_block": "eb-m005-20231031-12345"})
    assert response.status_code == 404
    assert "send its uid" in response.json()["detail"]


@pytest.mark.parametrize(
    "uid",
    ["abc", UID[7][:-1], UID[7] + "0", "'; DROP TABLE dpd_dataproduct; --", "x\x00y"],
    ids=["word", "short", "long", "sql", "nul"],
)
def test_a_uid_that_is_not_a_uid_answers_422(anonymous, uid):
    response = post(anonymous, {"uid": uid})
    assert response.status_code == 422
    assert "is not a data product uid" in response.json()["detail"]


@pytest.mark.parametrize("uid", [5, 1.5, True, [UID[7]], {"uid": UID[7]}])
def test_a_uid_of_the_wrong_type_answers_422(anonymous, uid):
    response = post(anonymous, {"uid": uid})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("uid: uid must be a string")


@pytest.mark.parametrize("raw", ['{"uid": ', "{'uid': 'x'}", "NaN", "\xff\xfe"])
def test_malformed_json_answers_422_not_a_server_error(anonymous, raw):
    response = anonymous.generic(
        "POST", "/dataproductmetadata", raw, content_type="application/json"
    )
    assert response.status_code == 422
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"].startswith("JSON decode error")


@pytest.mark.parametrize("body", [[], "uid", 7, None], ids=["list", "string", "number", "null"])
def test_a_body_that_is_not_an_object_answers_422(anonymous, body):
    response = anonymous.generic(
        "POST", "/dataproductmetadata", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 422
    assert "must be a JSON object" in response.json()["detail"]


def test_a_20_mb_body_answers_413(anonymous):
    body = json.dumps({"uid": UID[7], "padding": "x" * (20 * 1024 * 1024)})
    response = anonymous.generic(
        "POST", "/dataproductmetadata", body, content_type="application/json"
    )
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (f"uid={UID[7]}", "application/x-www-form-urlencoded"),
        (json.dumps({"uid": UID[7]}), "text/plain"),
    ],
    ids=["form", "text"],
)
def test_a_form_or_text_body_answers_422_in_json_as_upstream(anonymous, body, content_type):
    response = anonymous.generic("POST", "/dataproductmetadata", body, content_type=content_type)
    assert response.status_code == 422
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"] == (
        "The request body must be JSON (Content-Type application/json, or none), "
        f"not {content_type}."
    )


def test_the_reference_example_document_comes_out_field_by_field(anonymous, upstream_volume):
    # Reference 2.8's example is fixture #3 indexed under the Helm root /mnt/data/product.
    relative = "eb-m001-20230921-245/ska-data-product.yaml"
    product = from_volume_file(
        (upstream_volume / relative).read_bytes(),
        configured_root="/mnt/data/product",
        relative_metadata_file=relative,
    )
    DataProduct.objects.filter(metadata_file=relative).delete()
    DataProduct.objects.create(**DataProduct.fields_from(product))
    response = post(anonymous, {"uid": "76fba20e-208c-78d5-7b57-5d81d746dc90"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    document = response.json()
    assert set(document) == {
        "interface",
        "execution_block",
        "context",
        "config",
        "files",
        "obscore",
        "date_created",
        "dataproduct_file",
        "metadata_file",
        "metadata_store_name",
        "uid",
    }
    assert document["interface"] == "http://schema.skao.int/ska-data-product-meta/0.1"
    assert document["execution_block"] == "eb-m001-20230921-245"
    assert document["context"]["observer"] == "PST_jc"
    assert document["context"]["intent"] == "Tied-array beam observation of J0437-4715"
    assert "notes" in document["context"]
    assert document["config"] == {"image": "artefact.skao.int/ska-pst/ska-pst", "version": "0.1.3"}
    assert document["files"][0] == {
        "path": "pst-low/245/data",
        "status": "done",
        "description": "Channelised voltage data raw files",
    }
    assert document["obscore"]["dataproduct_type"] == "timeseries"
    assert document["obscore"]["calib_level"] == 0
    assert document["obscore"]["pol_states"] is None
    assert document["date_created"] == "2023-09-21"
    assert document["dataproduct_file"] == "eb-m001-20230921-245"
    assert document["metadata_file"] == "eb-m001-20230921-245/ska-data-product.yaml"
    assert document["uid"] == "76fba20e-208c-78d5-7b57-5d81d746dc90"


@pytest.mark.parametrize("content_type", ["application/json", ""], ids=["json", "none"])
def test_a_request_without_a_body_answers_422_as_upstream(anonymous, content_type):
    response = anonymous.generic("POST", "/dataproductmetadata", "", content_type=content_type)
    assert response.status_code == 422
    assert response.json()["detail"] == "The request body is missing; send a JSON object."


def test_a_get_answers_405_with_the_upstream_text(anonymous):
    response = anonymous.get("/dataproductmetadata")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}
