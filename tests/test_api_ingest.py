"""POST /ingestnewdataproduct and /ingestnewmetadata (reference 2.10, 2.11, 7, 8.2 #1, #12)."""

import json
import os

import pytest

from dpd.metadata import from_volume_file
from dpd.models import DataProduct
from tests.conftest import FIXTURES
from tests.product_fixtures import UID, UPSTREAM_ROOT

pytestmark = pytest.mark.usefixtures("upstream_volume")

EB15 = "eb-test-20200325-00001"
VR = "eb-notebook-20240201-54576/ska-sdp/pb-notebookvr-20240201-54576"
TEST_BODY = {
    "interface": "http://schema.skao.int/ska-data-product-meta/0.1",
    "execution_block": "eb-test-20191031-99999",
    "context": {},
    "config": {},
    "files": [],
    "obscore": {},
    "date_created": "2001-01-01",
    "metadata_file": "/somewhere/else.yaml",
}


def ingest_product(client, body):
    return client.post("/ingestnewdataproduct", body, format="json")


def ingest_metadata(client, body):
    return client.post("/ingestnewmetadata", body, format="json")


def metadata_of(client, uid):
    return client.post("/dataproductmetadata", {"uid": uid}, format="json").json()


# --- /ingestnewmetadata ---------------------------------------------------------


def test_the_reference_test_body_is_stored_with_the_reference_uid(curator):
    response = ingest_metadata(curator, TEST_BODY)
    assert response.status_code == 201
    assert response.json() == {
        "status": "success",
        "message": "New data product metadata received and saved in the DPD datastore.",
        "uid": "aa777038-1179-7430-b4c4-01b3afa5d14e",
    }
    document = metadata_of(curator, "aa777038-1179-7430-b4c4-01b3afa5d14e")
    # Derived fields overwrite the body's.
    assert document["date_created"] == "2019-10-31"
    assert document["dataproduct_file"] == "None"
    assert document["metadata_file"] == "None"


def test_example_metadata_json_with_files_as_an_object_is_accepted(curator):
    body = json.loads((FIXTURES / "example_metadata.json").read_text())
    response = ingest_metadata(curator, body)
    assert response.status_code == 201
    assert response.json()["uid"] == "328975cf-0131-d5a5-ec25-22f03789df80"
    document = metadata_of(curator, "328975cf-0131-d5a5-ec25-22f03789df80")
    assert document["date_created"] == "2019-10-31"
    assert document["files"]["path"] == "vis.ms"


def test_posting_the_same_execution_block_again_updates_the_same_product(curator):
    ingest_metadata(curator, TEST_BODY)
    again = ingest_metadata(curator, {**TEST_BODY, "context": {"notes": "second"}})
    assert again.json()["uid"] == "aa777038-1179-7430-b4c4-01b3afa5d14e"
    assert DataProduct.objects.filter(execution_block="eb-test-20191031-99999").count() == 1
    assert metadata_of(curator, again.json()["uid"])["context"] == {"notes": "second"}


def test_a_body_without_content_type_is_read_as_json(curator):
    response = curator.generic("POST", "/ingestnewmetadata", json.dumps(TEST_BODY), content_type="")
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"context": {}}, "missing execution_block"),
        ({"execution_block": None}, "missing execution_block"),
        ({"execution_block": 20191031}, "execution_block must be a string"),
        ({"execution_block": ""}, "execution_block is empty"),
        ({"execution_block": "eb-x", "context": {"access_group": ["a", "b"]}}, "single string"),
    ],
    ids=["missing", "null", "number", "empty", "group-list"],
)
def test_metadata_without_a_usable_execution_block_answers_400(curator, body, reason):
    response = ingest_metadata(curator, body)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Invalid metadata: ")
    assert reason in response.json()["detail"]
    assert not DataProduct.objects.exists()


@pytest.mark.parametrize("body", [[TEST_BODY], "eb-test", 5, None], ids=str)
def test_a_body_that_is_not_an_object_answers_422(curator, body):
    response = curator.generic(
        "POST", "/ingestnewmetadata", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 422
    assert "must be a JSON object" in response.json()["detail"]


def test_malformed_json_answers_422(curator):
    response = curator.generic(
        "POST", "/ingestnewmetadata", '{"execution_block": "eb-', content_type="application/json"
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith("JSON decode error")


def test_a_metadata_body_over_the_size_limit_answers_413(curator, settings):
    settings.METADATA_MAX_BYTES = 4096
    body = {**TEST_BODY, "context": {"notes": "x" * 5000}}
    response = ingest_metadata(curator, body)
    assert response.status_code == 413
    assert response.json() == {
        "detail": "The request body is over the 4096-byte limit (METADATA_MAX_BYTES)."
    }
    assert not DataProduct.objects.exists()


def test_a_20_mb_body_answers_413(curator):
    body = json.dumps({**TEST_BODY, "padding": "x" * (20 * 1024 * 1024)})
    response = curator.generic("POST", "/ingestnewmetadata", body, content_type="application/json")
    assert response.status_code == 413
    assert "detail" in response.json()
    assert not DataProduct.objects.exists()


def test_a_deeply_nested_document_is_refused(curator):
    body = {"execution_block": "eb-deep-20240101-1"}
    node = body
    for _ in range(100):
        node["x"] = {}
        node = node["x"]
    response = ingest_metadata(curator, body)
    assert response.status_code == 400
    assert "nested deeper" in response.json()["detail"]


def test_the_v017_example_execution_block_gets_the_documented_uid(curator):
    response = ingest_metadata(curator, {**TEST_BODY, "execution_block": "eb-test-20240806-99999"})
    assert response.status_code == 201
    assert response.json()["uid"] == "1f8250d0-0e2f-2269-1d9a-ad465ae15d5c"


# --- /ingestnewdataproduct ------------------------------------------------------


def test_a_folder_is_ingested_under_the_uid_the_indexer_gives_it(curator, upstream_volume):
    response = ingest_product(curator, {"execution_block": EB15})
    assert response.status_code == 201
    assert response.json() == {
        "status": "success",
        "message": "New data product received and search store index updated",
        "uid": UID[15],
    }
    # The indexer's rule: the configured root string + the folder (reference 4.1).
    relative = f"{EB15}/ska-data-product.yaml"
    parsed = from_volume_file(
        (upstream_volume / relative).read_bytes(),
        configured_root=UPSTREAM_ROOT,
        relative_metadata_file=relative,
    )
    assert str(parsed.uid) == UID[15]
    product = DataProduct.objects.get(uid=UID[15])
    assert product.dataproduct_file == EB15
    assert product.metadata_file == relative
    assert product.file_size == (upstream_volume / relative).stat().st_size


def test_a_sub_product_is_reached_through_relative_path_name(curator):
    response = ingest_product(
        curator, {"execution_block": "eb-notebook-20240201-54576", "relativePathName": VR}
    )
    assert response.status_code == 201
    assert response.json()["uid"] == UID[12]


def test_relative_path_name_may_name_the_metadata_file_itself(curator):
    response = ingest_product(curator, {"relativePathName": f"{VR}/ska-data-product.yaml"})
    assert response.status_code == 201
    assert response.json()["uid"] == UID[12]


def test_the_v017_example_body_falls_back_to_the_execution_block(curator):
    body = {
        "execution_block": EB15,
        "relativePathName": f"product/{EB15}",
        "fullPathName": f"/mnt/data/product/{EB15}",
        "metaDataFile": f"/mnt/data/product/{EB15}/ska-data-product.yaml",
    }
    response = ingest_product(curator, body)
    assert response.status_code == 201
    assert response.json()["uid"] == UID[15]


def test_ingesting_twice_keeps_one_product(curator):
    ingest_product(curator, {"execution_block": EB15})
    ingest_product(curator, {"execution_block": EB15, "relativePathName": f"./{EB15}/"})
    assert DataProduct.objects.count() == 1


def test_a_symlinked_path_inside_the_volume_gives_the_canonical_product(curator, upstream_volume):
    os.symlink(upstream_volume / EB15, upstream_volume / "alias")
    response = ingest_product(curator, {"relativePathName": "alias"})
    assert response.json()["uid"] == UID[15]


UNSAFE = [
    "../etc",
    f"{EB15}/../../outside",
    "/etc",
    "//etc",
    "%2e%2e/etc",
    "%2E%2E%2Fetc",
    "%252e%252e%252fetc",
    "..%2fetc",
    "%2fetc",
    f"{EB15}\x00",
    f"{EB15}%00",
]


@pytest.mark.parametrize("path", UNSAFE)
@pytest.mark.parametrize("field", ["execution_block", "relativePathName"])
def test_a_path_leaving_the_volume_answers_400(curator, field, path):
    body = {"execution_block": EB15, field: path}
    response = ingest_product(curator, body)
    assert response.status_code == 400
    assert response.json()["detail"]
    assert not DataProduct.objects.exists()


def test_a_symlink_leaving_the_volume_answers_400(curator, upstream_volume, tmp_path):
    outside = tmp_path / "outside" / "eb-out-20240101-1"
    outside.mkdir(parents=True)
    (outside / "ska-data-product.yaml").write_text("execution_block: eb-out-20240101-1\n")
    os.symlink(outside, upstream_volume / "eb-out-20240101-1")
    response = ingest_product(curator, {"execution_block": "eb-out-20240101-1"})
    assert response.status_code == 400
    assert response.json() == {"detail": "'eb-out-20240101-1' leads outside the volume"}
    assert not DataProduct.objects.exists()


def test_a_metadata_file_symlinked_outside_the_volume_answers_400(
    curator, upstream_volume, tmp_path
):
    (tmp_path / "secret.yaml").write_text("execution_block: eb-secret-20240101-1\n")
    folder = upstream_volume / "eb-link-20240101-1"
    folder.mkdir()
    os.symlink(tmp_path / "secret.yaml", folder / "ska-data-product.yaml")
    response = ingest_product(curator, {"execution_block": "eb-link-20240101-1"})
    assert response.status_code == 400
    assert not DataProduct.objects.exists()


def test_a_missing_folder_answers_404(curator):
    response = ingest_product(curator, {"execution_block": "eb-nowhere-20240101-1"})
    assert response.status_code == 404
    assert response.json() == {
        "detail": "Metadata file not found: eb-nowhere-20240101-1/ska-data-product.yaml"
    }


def test_a_folder_without_metadata_answers_404(curator):
    response = ingest_product(curator, {"execution_block": "eb-notebook-20240201-54576"})
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("folder", "reason"),
    [
        ("eb-none-19700101-00001", "missing execution_block"),
        ("eb-none-19700101-00003", "empty document"),
    ],
)
def test_invalid_metadata_answers_400_with_the_reason(curator, folder, reason):
    response = ingest_product(curator, {"execution_block": folder})
    assert response.status_code == 400
    assert response.json() == {
        "detail": f"Invalid metadata file {folder}/ska-data-product.yaml: {reason}"
    }


def test_invalid_yaml_answers_400_with_the_line(curator, upstream_volume):
    folder = upstream_volume / "eb-bad-20240101-1"
    folder.mkdir()
    (folder / "ska-data-product.yaml").write_text("execution_block: [unclosed\n")
    response = ingest_product(curator, {"execution_block": "eb-bad-20240101-1"})
    assert response.status_code == 400
    assert "YAML syntax error at line" in response.json()["detail"]


def test_a_file_that_is_not_a_metadata_file_answers_400(curator):
    response = ingest_product(
        curator, {"relativePathName": "eb-test-20230401-12345/output.scan-1.ms"}
    )
    assert response.status_code == 400
    assert "is not a product folder" in response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [{}, {"execution_block": None}, {"execution_block": ""}, {"fullPathName": EB15}],
    ids=["empty", "null", "blank", "only-full-path"],
)
def test_a_body_without_execution_block_answers_422(curator, body):
    response = ingest_product(curator, body)
    assert response.status_code == 422
    assert response.json()["detail"] == "execution_block: This field is required."


@pytest.mark.parametrize("value", [5, ["eb"], {"eb": 1}])
def test_an_execution_block_of_the_wrong_type_answers_422(curator, value):
    response = ingest_product(curator, {"execution_block": value})
    assert response.status_code == 422
    assert response.json()["detail"] == "execution_block: Not a valid string."


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        ('{"execution_block": "eb-', "JSON decode error"),
        (json.dumps([EB15]), "The request body must be a JSON object, not an array."),
        (json.dumps(EB15), "The request body must be a JSON object, not a string."),
        ("", "The request body is missing; send a JSON object."),
    ],
    ids=["malformed", "array", "string", "missing"],
)
def test_a_product_body_that_is_not_a_json_object_answers_422(curator, raw, detail):
    response = curator.generic(
        "POST", "/ingestnewdataproduct", raw, content_type="application/json"
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith(detail)
    assert not DataProduct.objects.exists()


def test_a_20_mb_product_body_answers_413(curator):
    body = json.dumps({"execution_block": EB15, "padding": "x" * (20 * 1024 * 1024)})
    response = curator.generic(
        "POST", "/ingestnewdataproduct", body, content_type="application/json"
    )
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    assert not DataProduct.objects.exists()


def test_a_product_body_sent_as_a_form_answers_422_in_json(curator):
    response = curator.generic(
        "POST",
        "/ingestnewdataproduct",
        f"execution_block={EB15}",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith("The request body must be JSON")
    assert not DataProduct.objects.exists()
