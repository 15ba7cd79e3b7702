"""The OpenAPI schema: served, browsable, complete, and committed without drift."""

import re
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiYamlRenderer

COMMITTED = Path(settings.BASE_DIR) / "docs" / "openapi.yaml"
PRODUCT_OPERATIONS = {
    ("/dataproductmetadata", "post"),
    ("/download", "post"),
    ("/ingestnewdataproduct", "post"),
    ("/ingestnewmetadata", "post"),
    ("/reindexdataproducts", "get"),
}


def generated_schema() -> str:
    """Exactly what `make schema` (manage.py spectacular) writes."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return OpenApiYamlRenderer().render(schema, renderer_context={}).decode()


def test_the_committed_schema_matches_the_code():
    assert COMMITTED.read_text() == generated_schema(), (
        "docs/openapi.yaml is out of date with the API: run `make schema` and commit the result"
    )


def test_the_schema_is_served_as_json_and_yaml(client):
    as_json = client.get("/openapi.json")
    assert as_json.status_code == 200
    assert as_json["Content-Type"].startswith("application/vnd.oai.openapi+json")
    assert as_json.json()["openapi"].startswith("3.")
    as_yaml = client.get("/schema")
    assert as_yaml.status_code == 200
    assert yaml.safe_load(as_yaml.content)["paths"].keys() == as_json.json()["paths"].keys()


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_schema_viewers_are_served_from_our_own_static_files(client, path):
    response = client.get(path)
    assert response.status_code == 200
    page = response.content.decode()
    assert "/openapi.json" in page
    assert "drf_spectacular_sidecar" in page  # the bundled assets, no CDN
    assert re.findall(r"(?:src|href)=\"(https?://[^\"]*)", page) == []
    assert "googleapis" not in page and "cdn.jsdelivr" not in page and "unpkg.com" not in page


def test_the_contract_paths_are_documented_without_a_trailing_slash():
    paths = yaml.safe_load(generated_schema())["paths"]
    for path, method in PRODUCT_OPERATIONS:
        assert method in paths[path], path


def test_every_product_operation_has_request_and_response_schemas_and_examples():
    paths = yaml.safe_load(generated_schema())["paths"]
    for path, method in PRODUCT_OPERATIONS:
        operation = paths[path][method]
        if method == "post":
            body = operation["requestBody"]["content"]["application/json"]
            assert body["schema"] and body["examples"], path
        for code, response in operation["responses"].items():
            content = next(iter(response["content"].values()))
            assert content["schema"], (path, code)
        success = next(c for c in operation["responses"] if c.startswith("2"))
        assert next(iter(operation["responses"][success]["content"].values())).get("examples") or (
            path == "/download"
        ), path


def test_the_browsable_api_renders_a_product_endpoint(client):
    response = client.get("/dataproductmetadata", HTTP_ACCEPT="text/html")
    assert response.status_code == 405  # POST only, but rendered as the browsable page
    assert response["Content-Type"].startswith("text/html")
    assert b"Dataproductmetadata" in response.content or b"dataproductmetadata" in response.content
