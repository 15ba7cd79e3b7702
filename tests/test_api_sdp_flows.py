"""Flows on every product row and placeholder rows, through the API, with the
flows written by the watcher from a real etcd (the SDP sample)."""

from __future__ import annotations

import json

import pytest

from dpd.models import DataProduct
from tests.access_support import TEAM, FakePermissionsApi, personas
from tests.sdp_support import EB1, EB2, EB3, ingest, watch_once

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
]

PB3 = "pb-m003-20260117-00001"


@pytest.fixture
def flows(sdp_etcd) -> dict[str, DataProduct]:
    """eb-m001 open, eb-m002 hidden in TEAM, eb-m003 only in etcd (a placeholder)."""
    products = {EB1: ingest(EB1), EB2: ingest(EB2, access_group=TEAM)}
    sdp_etcd.load()
    watch_once()
    return products


@pytest.fixture
def people(settings):
    api = FakePermissionsApi().start()
    settings.SKA_PERMISSIONS_API_HOST = api.url
    settings.SKA_PERMISSIONS_API_TIMEOUT_SECONDS = 1.0
    yield personas(api)
    api.stop()


def search(client, body=None, **extra) -> list[dict]:
    response = client.post("/dataproductsearch", body or {}, format="json", **extra)
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def grid(client, body: dict) -> dict:
    response = client.post(
        "/filterdataproducts", {"page": 0, "pageSize": 50, **body}, format="json"
    )
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def by_eb(rows: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["execution_block"], []).append(row)
    return grouped


def test_search_rows_carry_the_flows_of_their_execution_block(anonymous, flows):
    rows = by_eb(search(anonymous))
    (first,) = rows[EB1]
    assert first["sdp_flow_status"] == "FLOWING"
    assert len(first["sdp_flows"]) == 4
    assert {
        "sdp_flow": "pb-m001-20260115-00004:data-product:pointing-offsets",
        "sdp_flow_status": "COMPLETED",
    } in first["sdp_flows"]
    assert first["metadata_store_name"] == "shared"
    assert "sdp_flow_placeholder" not in first


def test_a_placeholder_row_stands_for_work_with_no_product_yet(anonymous, flows):
    rows = by_eb(search(anonymous))
    (placeholder,) = rows[EB3]
    assert placeholder["sdp_flow_placeholder"] is True
    assert placeholder["metadata_store_name"] == "SDP"
    assert placeholder["dataproduct_file"] == "None"
    assert placeholder["config.processing_block"] == PB3
    assert placeholder["sdp_flows"] == [
        {"sdp_flow": f"{PB3}:data-product:vis-receive-mswriter", "sdp_flow_status": "INITIALISED"}
    ]
    # eb-m002's only product is hidden: no placeholder reveals it to anyone.
    assert EB2 not in rows


def test_rendered_rows_equal_the_spliced_ones(anonymous, flows):
    spliced = search(anonymous)
    rendered = search(anonymous, HTTP_ACCEPT="application/json; indent=2")
    assert rendered == spliced


def test_the_grid_filters_and_sorts_on_sdp_flow_status(member, flows):
    failed = grid(
        member,
        {
            "filterModel": {
                "items": [{"field": "sdp_flow_status", "operator": "equals", "value": "failed"}]
            }
        },
    )
    assert [row["execution_block"] for row in failed["data"]] == [EB2]
    ordered = grid(member, {"sortModel": [{"field": "sdp_flow_status", "sort": "asc"}]})
    statuses = [row.get("sdp_flow_status") for row in ordered["data"]]
    assert statuses == ["FAILED", "FLOWING", "INITIALISED"]


def test_the_store_filter_picks_placeholders_or_products(anonymous, flows):
    def store(name):
        body = {
            "searchPanelOptions": {
                "items": [{"field": "metadata_store_name", "operator": "equals", "value": name}]
            }
        }
        return {row["execution_block"] for row in grid(anonymous, body)["data"]}

    assert store("SDP") == {EB3}
    assert store("shared") == {EB1}


def test_metadata_of_a_product_and_of_a_placeholder(anonymous, flows):
    response = anonymous.post("/dataproductmetadata", {"uid": str(flows[EB1].uid)}, format="json")
    assert response.json()["sdp_flow_status"] == "FLOWING"
    placeholder = DataProduct.objects.get(source="sdp", execution_block=EB3)
    response = anonymous.post("/dataproductmetadata", {"uid": str(placeholder.uid)}, format="json")
    document = response.json()
    assert document["sdp_flow_placeholder"] is True
    assert document["metadata_store_name"] == "SDP"
    assert document["config"]["processing_block"] == PB3


def test_downloading_a_placeholder_is_a_clear_404(anonymous, flows):
    placeholder = DataProduct.objects.get(source="sdp", execution_block=EB3)
    response = anonymous.post("/download", {"uid": str(placeholder.uid)}, format="json")
    assert response.status_code == 404
    assert "placeholder for SDP work in progress" in response.json()["detail"]
    response = anonymous.post("/download", {"execution_block": EB3}, format="json")
    assert response.status_code == 404
    assert "placeholder" in response.json()["detail"]


def test_status_lists_the_sdp_store_and_the_watcher(anonymous, flows, sdp_etcd):
    body = anonymous.get("/status").json()
    assert "SDP" in body["available_data_stores"]
    sdp = body["sdp_config_db"]
    assert sdp["connected"] is True  # the state the watcher last recorded
    assert sdp["number_of_flows"] == 6
    assert sdp["revision"] == sdp_etcd.revision()
    assert sdp["last_event_time"]
    # Placeholders are not products.
    assert body["metadata_store_status"]["number_of_dataproducts"] == 1


def test_flows_cost_no_query_per_row(anonymous, flows, django_assert_num_queries):
    for n in range(30):
        ingest(f"eb-m001-20260115-{n:05d}")
    # The same queries for the page whatever it holds: flows come with the rows.
    with django_assert_num_queries(1):
        grid(anonymous, {})
    with django_assert_num_queries(1):
        search(anonymous)


@pytest.mark.parametrize("restricted", [False, True])
def test_who_sees_flows_and_placeholders(flows, people, settings, restricted):
    settings.SDP_PLACEHOLDERS_SIGNED_IN_ONLY = restricted
    for name, persona in people.items():
        rows = by_eb(grid(persona.client, {})["data"])
        searched = by_eb(search(persona.client))
        sees_hidden = persona.groups is None or TEAM in persona.groups
        # A hidden product's flows are hidden with it.
        assert (EB2 in rows) == sees_hidden, name
        if sees_hidden:
            assert rows[EB2][0]["sdp_flow_status"] == "FAILED"
        assert EB2 not in searched  # /dataproductsearch: open products only
        signed_in = name != "anonymous"
        shown = not restricted or signed_in
        assert (EB3 in rows) == shown, name
        assert (EB3 in searched) == shown, name
        # A key:value search reads the newest products' window first (PostgreSQL).
        paired = by_eb(search(persona.client, {"key_value_pairs": ["execution_block:eb-m00"]}))
        assert (EB3 in paired) == shown, name
        assert paired.keys() - {EB3} == {EB1}, name


def test_hostile_keys_in_etcd_never_make_an_answer_fail(anonymous, sdp_etcd):
    ingest("eb-odd-20260301-00001")
    sdp_etcd.load(
        {
            "/pb/pb-odd": {"eb_id": "eb-odd-20260301-00001"},
            "/pb/pb-odd/state": {"status": "<script>alert(1)</script>"},
            '/flow/pb-odd:data-product:\u2028"quoted" & <b>': {"sink": "not an object"},
            '/flow/pb-odd:data-product:\u2028"quoted" & <b>/state': {"status": "\u2029x"},
            "/flow/pb-missing:data-product:orphan/state": {"status": "FLOWING"},
            "/pb/pb-noeb": {"script": {"name": 5}},
        }
    )
    sdp_etcd.put("/flow/pb-odd:data-product:bad", b"\xff\xfe", raw=True)
    watch_once()
    rows = by_eb(search(anonymous))
    (odd,) = rows["eb-odd-20260301-00001"]
    assert odd["sdp_flows"] == [
        {"sdp_flow": 'pb-odd:data-product:\u2028"quoted" & <b>', "sdp_flow_status": "\u2029x"}
    ]
    assert rows.keys() == {"eb-odd-20260301-00001"}  # no placeholder without an EB
    grid(anonymous, {"sortModel": [{"field": "sdp_flow_status", "sort": "desc"}]})
    response = anonymous.post("/dataproductmetadata", {"uid": odd["uid"]}, format="json")
    assert response.status_code == 200
