"""Request bodies that used to reach a 500: JSON nested past Python's
recursion limit, paging numbers past the database's integers, names longer
than the file system or the catalogue's columns allow. Each gets a clear 4xx
in JSON (or, for paging past the end, an empty page) and stores nothing."""

from __future__ import annotations

import pytest

from dpd.models import DataProduct
from indexing.indexer import index_volume

pytestmark = pytest.mark.usefixtures("upstream_catalogue")

EB15 = "eb-test-20200325-00001"
DEEP = "[" * 5000 + "]" * 5000  # json.loads raises RecursionError, not ValueError

# (path, the status a malformed body gets there: 422 on the typed-body
# endpoints as upstream, 400 on the filter and annotation endpoints)
JSON_ENDPOINTS = [
    ("/dataproductsearch", 422),
    ("/dataproductmetadata", 422),
    ("/download", 422),
    ("/ingestnewdataproduct", 422),
    ("/ingestnewmetadata", 422),
    ("/filterdataproducts", 400),
    ("/annotation", 400),
]


@pytest.mark.parametrize(("path", "code"), JSON_ENDPOINTS)
@pytest.mark.parametrize("body", [DEEP, '{"x":' * 300 + "1" + "}" * 300], ids=["5000", "300"])
def test_json_nested_past_the_limit_is_malformed_json_not_a_500(curator, path, code, body):
    count = DataProduct.objects.count()

    response = curator.post(path, body, content_type="application/json")

    assert response.status_code == code
    assert response["Content-Type"] == "application/json"
    assert "nested deeper than 200 levels" in response.json()["detail"]
    assert DataProduct.objects.count() == count


def test_a_filter_page_far_past_the_end_is_an_empty_page_with_the_total(anonymous):
    response = anonymous.post(
        "/filterdataproducts", {"page": 10**17, "pageSize": 100}, format="json"
    )

    assert response.status_code == 200
    assert response.json() == {"data": [], "total": 12}


@pytest.mark.parametrize("paging", [{"start": 10**20, "count": 5}, {"offset": 10**19}])
def test_a_search_offset_far_past_the_end_is_an_empty_page_with_the_total(anonymous, paging):
    body = {"start_date": "2001-12-12", "end_date": "2032-12-12", **paging}
    response = anonymous.post("/dataproductsearch", body, format="json")

    assert response.status_code == 200
    page = response.json()
    assert page["data"] == [] and page["total"] == 12 and page["more_results"] is False


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"execution_block": "a" * 300}, "a name in the path is longer than 255 bytes"),
        (
            {"execution_block": EB15, "relativePathName": f"{EB15}/{'b' * 256}"},
            "a name in the path is longer than 255 bytes",
        ),
        (
            {"execution_block": EB15, "relativePathName": "/".join(["c" * 200] * 21)},
            "the path is longer than 4096 bytes",
        ),
    ],
    ids=["execution-block", "folder-name", "whole-path"],
)
def test_an_ingest_path_the_file_system_cannot_hold_is_a_400(curator, body, detail):
    response = curator.post("/ingestnewdataproduct", body, format="json")

    assert response.status_code == 400
    assert detail in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"execution_block": "e" * 256}, "execution_block is longer than 255 characters"),
        (
            {"execution_block": "eb-long-group-1", "context": {"access_group": "g" * 256}},
            "context.access_group is longer than 255 characters",
        ),
    ],
    ids=["execution-block", "access-group"],
)
def test_ingested_metadata_too_long_for_the_catalogue_is_a_400(curator, body, reason):
    count = DataProduct.objects.count()

    response = curator.post("/ingestnewmetadata", body, format="json")

    assert response.status_code == 400
    assert reason in response.json()["detail"]
    assert DataProduct.objects.count() == count


def test_a_volume_file_too_long_for_the_catalogue_is_an_error_and_the_rest_is_indexed(tmp_path):
    good = tmp_path / "eb-good-20240101-1"
    good.mkdir()
    (good / "ska-data-product.yaml").write_text("execution_block: eb-good-20240101-1\n")
    bad = tmp_path / "eb-long"
    bad.mkdir()
    (bad / "ska-data-product.yaml").write_text(f"execution_block: {'e' * 300}\n")
    deep = tmp_path.joinpath(*["d" * 200] * 6)  # a path of ~1,200 characters
    deep.mkdir(parents=True)
    (deep / "ska-data-product.yaml").write_text("execution_block: eb-deep-20240101-1\n")

    result = index_volume(str(tmp_path))

    errors = dict(result.errors)
    assert errors["eb-long/ska-data-product.yaml"] == (
        "execution_block is longer than 255 characters"
    )
    assert [reason for path, reason in errors.items() if path.startswith("d")] == [
        "its path is longer than 1024 characters"
    ]
    assert DataProduct.objects.filter(execution_block="eb-good-20240101-1").exists()


def test_a_uid_given_as_an_object_is_named_an_object(anonymous):
    response = anonymous.post("/dataproductmetadata", {"uid": {"a": 1}}, format="json")

    assert response.status_code == 422
    assert "uid must be a string, not an object" in response.json()["detail"]


SURROGATE = '"a\\ud800b"'  # valid JSON, but no UTF-8 text


@pytest.mark.parametrize(
    ("path", "code", "raw"),
    [
        ("/dataproductsearch", 422, '{"key_value_pairs": ["context.notes:' + SURROGATE[1:] + "]}"),
        (
            "/filterdataproducts",
            400,
            '{"filterModel": {"items": [{"field": "execution_block", "operator": "contains",'
            ' "value": ' + SURROGATE + "}]}}",
        ),
        ("/ingestnewmetadata", 422, '{"execution_block": ' + SURROGATE + "}"),
        (
            "/annotation",
            400,
            '{"data_product_uid": "a0a2a10f-e382-31ba-0949-9a79204dfcad", "annotation_text": '
            + SURROGATE
            + "}",
        ),
    ],
    ids=["search", "filter", "ingest", "annotation"],
)
def test_an_unpaired_surrogate_is_malformed_json_not_a_500(curator, path, code, raw):
    response = curator.post(path, raw, content_type="application/json")

    assert response.status_code == code
    assert "unpaired surrogate" in response.json()["detail"]


def test_a_huge_limit_on_the_run_list_is_capped(curator):
    from indexing.models import IndexRun

    IndexRun.objects.create(
        trigger=IndexRun.Trigger.API, status=IndexRun.Status.COMPLETED, volume_prefix="dpd_x"
    )

    response = curator.get("/api/v1/index-runs/?limit=9223372036854775808")

    assert response.status_code == 200
    assert len(response.json()["results"]) == 1


@pytest.mark.parametrize("cookie", ["0\x00\x80\x80\x80", "abc\x00defgh", "ABCDEFGH;--'"])
def test_a_session_cookie_django_could_not_have_made_is_no_session(cookie):
    from django.test import Client

    client = Client()
    client.cookies["sessionid"] = cookie

    posted = client.post("/annotation", {"annotation_text": "x"}, content_type="application/json")
    searched = client.post("/filterdataproducts", {}, content_type="application/json")

    assert posted.status_code == 401  # no identity, not a database error
    assert searched.status_code == 200 and len(searched.json()) == 12
