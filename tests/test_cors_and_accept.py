"""What browsers and scripts send besides the body: CORS (reference 1.4) and
Accept headers, which the SKA DPD API ignores (it always answers JSON)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("upstream_catalogue")

DASHBOARD = "http://localhost:8100"
WIDE = {"start_date": "2001-12-12", "end_date": "2032-12-12"}


def preflight(client, origin: str, headers: str):
    return client.options(
        "/dataproductsearch",
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS=headers,
    )


def test_the_dashboards_origin_may_send_any_header_with_credentials(anonymous):
    response = preflight(anonymous, DASHBOARD, "content-type, x-trace-id, x-my-app-version")

    assert response["Access-Control-Allow-Origin"] == DASHBOARD
    assert response["Access-Control-Allow-Credentials"] == "true"
    assert response["Access-Control-Allow-Headers"] == "content-type, x-trace-id, x-my-app-version"
    assert "POST" in response["Access-Control-Allow-Methods"]


def test_another_origin_gets_no_cors_headers(anonymous):
    response = preflight(anonymous, "http://evil.example", "content-type, x-trace-id")

    assert not response.has_header("Access-Control-Allow-Origin")
    assert not response.has_header("Access-Control-Allow-Headers")


def test_a_request_from_the_dashboards_origin_is_readable_by_it(anonymous):
    response = anonymous.post("/dataproductsearch", WIDE, format="json", HTTP_ORIGIN=DASHBOARD)

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == DASHBOARD


@pytest.mark.parametrize("accept", ["text/plain", "application/xml", "image/png"])
def test_an_accept_header_no_renderer_offers_still_gets_json(anonymous, accept):
    searched = anonymous.post("/dataproductsearch", WIDE, format="json", HTTP_ACCEPT=accept)
    status = anonymous.get("/status", HTTP_ACCEPT=accept)
    refused = anonymous.post(
        "/dataproductsearch", {"key_value_pairs": ["nocolon"]}, format="json", HTTP_ACCEPT=accept
    )

    assert searched.status_code == 200 and searched["Content-Type"] == "application/json"
    assert len(searched.json()) == 12
    assert status.status_code == 200 and "metadata_store_status" in status.json()
    assert refused.status_code == 400
    assert refused.json() == {"detail": "Invalid search key pair."}


def test_csv_is_still_given_to_those_who_ask_for_it(anonymous):
    response = anonymous.post("/dataproductsearch", WIDE, format="json", HTTP_ACCEPT="text/csv")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
