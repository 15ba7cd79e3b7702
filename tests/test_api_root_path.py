"""The service under a path prefix, as the SKA DPD API chart deploys it:
API_ROOT_PATH=/dataproduct/api. Every documented path answers under the
prefix, every URL the service writes (links, redirects, Location headers,
the schema's server, static files) carries it, and the paths without it
still answer, since the upstream chart's ingress strips the prefix
(reference 1.1). Served by real gunicorn: Django's test client does not go
through the WSGI entry point that handles the prefix."""

from __future__ import annotations

import io
import os
import re
import tarfile

import pytest
import requests
from django.contrib.auth.models import User
from django.db import connection

from dpd.web_server import gunicorn_command
from tests.product_fixtures import UID
from tests.service_processes import Process, database_url, free_port, wait_for

pytestmark = pytest.mark.slow

PREFIX = "/dataproduct/api"
PRODUCT = UID[2]
# The dashboard's grid request on first load (reference 2.4).
FIRST_LOAD = {
    "filterModel": {},
    "searchPanelOptions": {
        "items": [{"field": "metadata_store_name", "operator": "equals", "value": "shared"}],
        "logicOperator": "and",
    },
    "sortModel": [{"field": "date_created", "sort": "desc"}],
    "page": 0,
    "pageSize": 25,
}


@pytest.fixture
def base(transactional_db, upstream_catalogue, tmp_path):
    """The service's URL under the prefix, e.g. http://127.0.0.1:PORT/dataproduct/api."""
    if connection.vendor != "postgresql":
        pytest.fail("a server sharing the test database needs PostgreSQL")
    User.objects.create_user("curator", password="curator-password", is_staff=True)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "PERSISTENT_STORAGE_PATH": str(upstream_catalogue),
        "API_ROOT_PATH": PREFIX + "/",  # a trailing slash is forgiven
        "DPD_THROTTLE_ANON_RATE": "",
        "DPD_COMPAT_OPEN_MANAGEMENT": "true",
        "INDEXING_ON_STARTUP": "false",
    }
    process = Process("gunicorn", gunicorn_command(f"127.0.0.1:{port}", 1), env, tmp_path)
    root = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert process.alive(), process.output()
        try:
            return requests.get(root + PREFIX + "/status", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_for(answers, timeout=60, what="gunicorn to serve the prefix")
        yield root + PREFIX
    finally:
        process.stop()


def get(url: str, **options) -> requests.Response:
    return requests.get(url, allow_redirects=False, timeout=30, **options)


def post(url: str, body: dict, **options) -> requests.Response:
    return requests.post(url, json=body, allow_redirects=False, timeout=30, **options)


def test_the_dashboards_requests_answer_under_the_prefix(base):
    # What the dashboard asks for, in the order it asks (reference section 0).
    assert get(base + "/status").json()["api_running"] is True
    assert get(base + "/muidatagridconfig").status_code == 200
    assert get(base + "/en/humanreadable").status_code == 200
    grid = post(base + "/filterdataproducts", FIRST_LOAD)
    assert grid.status_code == 200 and grid.json()["data"]
    assert get(base + "/annotations/" + PRODUCT).status_code in (204, 401)

    metadata = post(base + "/dataproductmetadata", {"uid": PRODUCT})
    assert metadata.status_code == 200, metadata.text
    assert f"{base}/products/{PRODUCT}/" in metadata.headers["Link"]

    download = post(base + "/download", {"uid": PRODUCT})
    assert download.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(download.content)) as archive:
        assert archive.getnames()


def test_every_documented_path_answers_under_the_prefix(base):
    search = post(base + "/dataproductsearch", {"start_date": "2001-01-01", "end_date": ""})
    assert search.status_code == 200 and search.json()
    assert get(base + "/layout").status_code == 200
    assert get(base + "/status/").status_code == 200

    reindex = get(base + "/reindexdataproducts")
    assert reindex.status_code == 202
    assert reindex.headers["Location"].startswith(PREFIX + "/api/v1/index-runs/")
    assert get(base + reindex.headers["Location"].removeprefix(PREFIX)).status_code == 200
    assert get(base + "/api/v1/index-runs/").status_code == 200

    schema = get(base + "/openapi.json").json()
    assert schema["servers"] == [{"url": PREFIX}]
    assert "/status" in schema["paths"]  # paths stay relative to the server
    assert get(base + "/schema").status_code == 200
    assert get(base + "/redoc").status_code == 200


def test_the_docs_page_loads_its_schema_and_assets_through_the_prefix(base):
    page = get(base + "/docs")
    assert page.status_code == 200
    assert f"{PREFIX}/openapi.json" in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(url.startswith(PREFIX + "/static/") for url in assets), assets
    origin = base.removesuffix(PREFIX)
    for url in assets:
        assert get(origin + url).status_code == 200, url


def test_admin_and_pages_redirect_and_link_under_the_prefix(base):
    origin = base.removesuffix(PREFIX)
    session = requests.Session()
    bounce = session.get(base + "/admin/", allow_redirects=False)
    assert bounce.status_code == 302
    assert bounce.headers["Location"] == f"{PREFIX}/admin/login/?next={PREFIX}/admin/"

    form = session.get(origin + bounce.headers["Location"])
    assert f'action="{PREFIX}/admin/login/' in form.text or 'action=""' in form.text
    stylesheet = re.search(r'href="([^"]+\.css)"', form.text).group(1)
    assert stylesheet.startswith(PREFIX + "/static/")
    assert session.get(origin + stylesheet).status_code == 200
    logged_in = session.post(
        origin + bounce.headers["Location"],
        data={
            "username": "curator",
            "password": "curator-password",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "next": f"{PREFIX}/admin/",
        },
        headers={"Referer": origin + bounce.headers["Location"]},
        allow_redirects=False,
    )
    assert logged_in.status_code == 302 and logged_in.headers["Location"] == f"{PREFIX}/admin/"
    assert f'href="{PREFIX}/admin/' in session.get(base + "/admin/").text

    product_page = session.get(f"{base}/products/{PRODUCT}/")
    assert product_page.status_code == 200
    assert f'action="{PREFIX}/products/{PRODUCT}/annotations/"' in product_page.text
    added = session.post(
        f"{base}/products/{PRODUCT}/annotations/",
        data={
            "annotation_text": "Seen under the prefix.",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": f"{base}/products/{PRODUCT}/"},
        allow_redirects=False,
    )
    assert added.status_code == 302
    assert added.headers["Location"].startswith(f"{PREFIX}/products/{PRODUCT}/")
    assert get(base + "/products/no-such-page/").status_code == 404


def test_paths_without_the_prefix_still_answer_as_behind_the_upstream_ingress(base):
    origin = base.removesuffix(PREFIX)
    assert get(origin + "/status").json()["api_running"] is True
    grid = post(origin + "/filterdataproducts", FIRST_LOAD)
    assert grid.status_code == 200 and grid.json()["data"]
    # The URLs it writes still carry the prefix, which the ingress adds back.
    assert get(origin + "/admin/").headers["Location"].startswith(PREFIX + "/admin/login/")
