"""Which products one /download sends: the one place where its request
becomes products, always within what the caller may see.

Three shapes of request:
- `uid` or `execution_block` (the SKA DPD API's body, as the dashboard sends
  it): that product, or every product of the execution block;
- a search body, without either identifier: the /dataproductsearch fields
  (`start_date`, `end_date`, `key_value_pairs`) or the /filterdataproducts
  filter model (`filterModel`, `searchPanelOptions`), validated by those
  endpoints' own serializers; every visible matching product with files goes
  into one archive, within DPD_QUERY_DOWNLOAD_MAX_PRODUCTS (checked here) and
  DPD_QUERY_DOWNLOAD_MAX_BYTES (checked by the view once the archive is laid
  out), or 413 with the figures before any byte;
- `uid` or `execution_block` in the query string of a POST without a body,
  for clients that cannot resume a POST with a body (`curl -C -` takes a
  POST body for an upload to resume).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, ValidationError

from annotations.services import annotated_product_uids
from dlm_bridge import services as dlm
from dpd import search
from dpd.access import visible_products
from dpd.api.product_serializers import ProductIdentifierSerializer, Unprocessable, body_object
from dpd.api.search_serializers import FilterRequestSerializer, SearchRequestSerializer
from dpd.models import DataProduct

SEARCH_FIELDS = ("start_date", "end_date", "key_value_pairs")
FILTER_FIELDS = ("filterModel", "searchPanelOptions")
QUERY_STEM = "dataproducts"


class DownloadTooLarge(APIException):
    """A search download over its limits: 413, the figures in `detail`."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "download_too_large"


@dataclass
class Selection:
    products: list[DataProduct]
    stem: str  # the archive's file name without ".tar"
    asked: str  # the request in words, for error messages
    is_search: bool


def select_products(request) -> Selection:
    body = _download_body(request)
    identified = body.get("uid") or body.get("execution_block")
    if not identified and any(name in body for name in SEARCH_FIELDS + FILTER_FIELDS):
        return _matching(request, body)
    return _identified(request, body)


def _download_body(request) -> dict[str, Any]:
    if request.stream is None and request.query_params:
        return request.query_params.dict()
    return body_object(request)


def _identified(request, body: dict[str, Any]) -> Selection:
    serializer = ProductIdentifierSerializer(data=body)
    if not serializer.is_valid():
        raise Unprocessable(serializer.errors)
    uid = serializer.validated_data.get("uid")
    execution_block = serializer.validated_data["execution_block"]
    products = visible_products(request, hidden_sources=dlm.hidden_sources())
    if uid is not None:
        products = products.filter(uid=uid)
        asked = f"uid {uid}"
    else:
        products = products.filter(execution_block=execution_block)
        asked = f"execution_block {execution_block}"
    products = list(products.only("uid", "dataproduct_file", "source"))
    if uid is not None:
        stem = (products[0].dataproduct_file or str(uid)) if products else str(uid)
        stem = stem.rstrip("/").rsplit("/", 1)[-1]
    else:
        stem = execution_block
    if refusal := dlm.download_refusal(products, asked):  # a DLM copy: not on this volume
        raise NotFound(refusal)
    if products and all(p.source == DataProduct.Source.SDP for p in products):
        raise NotFound(
            f"Nothing to download: {asked} is a placeholder for SDP work in progress "
            "(reference 4.7); it has no files until its data product is indexed."
        )
    return Selection(products, stem, asked, is_search=False)


def _matching(request, body: dict[str, Any]) -> Selection:
    visible = visible_products(request)
    if any(name in body for name in FILTER_FIELDS):
        data = FilterRequestSerializer.validated(body)
        grid = data.get("filterModel") or {}
        panel = data.get("searchPanelOptions") or {}
        products = search.filter_products(
            visible,
            filter_items=grid.get("items") or [],
            logic_operator=(grid.get("logicOperator") or "and").lower(),
            panel_items=panel.get("items") or [],
            sort_model=[],
            annotated_uids=annotated_product_uids,
        )
        asked = "the filter model"
    else:
        try:
            data = SearchRequestSerializer.validated(body)
        except ValidationError as exc:
            raise Unprocessable(exc.detail) from None
        products = visible
        if data["start_bound"] is not None:
            products = products.filter(date_created__gte=data["start_bound"])
        if data["end_bound"] is not None:
            products = products.filter(date_created__lte=data["end_bound"])
        for key, value in data["pairs"]:
            products = products.filter(search.key_value_q(key, value))
        asked = "the search"
    products = products.filter(source=DataProduct.Source.VOLUME, dataproduct_file__isnull=False)
    limit = settings.DPD_QUERY_DOWNLOAD_MAX_PRODUCTS
    found = list(
        products.order_by("dataproduct_file").only("uid", "dataproduct_file", "source")[: limit + 1]
    )
    if len(found) > limit:
        total = products.count()
        raise DownloadTooLarge(
            f"Too many products for one archive: {total} visible products with files match "
            f"{asked}; one archive holds at most {limit} (DPD_QUERY_DOWNLOAD_MAX_PRODUCTS). "
            "Narrow the search or download in parts."
        )
    if not found:
        raise NotFound(f"File not found: no visible product with files matches {asked}")
    return Selection(found, QUERY_STEM, f"{asked} ({len(found)} products)", is_search=True)


def check_size(selection: Selection, size: int) -> None:
    """The byte limit of a search download, once its archive is laid out."""
    limit = settings.DPD_QUERY_DOWNLOAD_MAX_BYTES
    if selection.is_search and size > limit:
        raise DownloadTooLarge(
            f"Archive too large: {len(selection.products)} products match, {size} bytes in "
            f"one archive; the limit is {limit} bytes (DPD_QUERY_DOWNLOAD_MAX_BYTES). "
            "Narrow the search or download in parts."
        )
